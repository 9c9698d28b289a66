"""OpenAI images (+ AIML's Imagen fields): `POST /v1/images/generations` (protocols.md §3, §4)
and `POST /v1/images/edits` (protocols-images-in.md §1).

The request is held until the images are ready (both APIs are synchronous)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from easel.api.caller import Authenticated, CorePort
from easel.api.dialects.common import (
    KEEP_ALIVE,
    Dialect,
    JsonBody,
    PayloadTooLarge,
    all_withheld,
    base64_bytes,
    delivered_images,
    ignored_header,
    json_object,
    ordered_images,
    prompt_header,
    reserve_reply,
    stand_in_header,
    with_keep_alives,
)
from easel.api.dialects.openai import edits, translate
from easel.api.dialects.openai.schemas import ImagesEditRequest, ImagesGenerateRequest
from easel.api.limits import BodyRefused, BodyTooLarge, HTTPRefusal, is_form, is_json, read_form
from easel.api.openapi import (
    BEARER,
    ERRORS,
    Open,
    example,
    model_schema,
    request_body,
    responses,
    security,
)
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.job import Job, JobStatus
from easel.domain.outcomes import JobFailed, StillRunning
from easel.domain.submission import Caller
from easel.services.port import Port

router = APIRouter(tags=["openai"])

PATH = "/v1/images/generations"


class ImagesResponse(Open):
    created: int
    data: list[dict[str, Any]]


class ErrorBody(Open):
    error: dict[str, Any]


UNAUTHENTICATED = "Incorrect or missing API key (send Authorization: Bearer <key>)"


def render_error(err: EaselError, request: Request) -> JSONResponse:
    """Every failure of a whole request, in OpenAI's shape (AIML's flat fields beside), with
    its x-request-id, and the job's id when a job exists (a held request that failed or timed
    out: the client can poll it)."""
    request_id = str(uuid.uuid4())
    headers = {"x-request-id": request_id}
    job = getattr(err, "job", None)
    if job is not None:
        headers["x-easel-job-id"] = job.id
    status = translate.ERRORS.status(err)
    message, param, code = err.message, err.parameter, translate.ERRORS.code(err.kind)
    if isinstance(err, HTTPRefusal):  # OpenAI's codes are snake_case: notFound -> not_found
        code = translate.snake_case(err.code)
    if isinstance(err, StillRunning):
        # The job goes on: a retry would only wait again (the SDK obeys this header).
        headers["x-should-retry"] = "false"
        message += (f"; the job goes on: fetch it with GET /easel/jobs/{err.job.id}, or "
                    "send the request again with the same Idempotency-Key header, if it had "
                    "one, to wait for it")
    if err.kind is ErrorKind.UNAUTHENTICATED:
        message, param = UNAUTHENTICATED, None
    body = translate.error_body(message, status, param=param, code=code, path=request.url.path,
                         request_id=request_id, now=datetime.now(UTC))
    return JSONResponse(body, status_code=status, headers=headers)


# Bodies that work as they are with the default catalog (tests/server/test_openapi_reference.py
# posts each one).
EXAMPLES = {
    "url": example("One image, by URL (AIML's Imagen 4 Fast id)", {
        "model": "google/imagen-4.0-fast-generate-001", "prompt": "a red fox in fresh snow",
        "n": 1, "size": "1024x1024", "response_format": "url"}),
    "b64_json": example("A generic id: `quality` picks the tier; base64 in the reply", {
        "model": "imagen-4", "quality": "low", "prompt": "a lighthouse at dusk, oil painting",
        "size": "1280x896", "response_format": "b64_json", "output_format": "jpeg"}),
    "aiml": example("AIML's fields: aspect ratio, seed, negative prompt", {
        "model": "google/imagen-4.0-generate-001", "prompt": "a bowl of ramen, studio photo",
        "negative_prompt": "blurry, text", "aspect_ratio": "3:4", "num_images": 1, "seed": 42}),
}


@router.post(PATH, summary="Generate images",
             openapi_extra={**request_body(model_schema(ImagesGenerateRequest), EXAMPLES),
                            **security(BEARER)},
             responses=responses(ImagesResponse, ErrorBody, ERRORS),
             response_model=ImagesResponse)
async def generate(
    request: Request, caller: Authenticated, port: CorePort, body: JsonBody
) -> JSONResponse | StreamingResponse:
    """OpenAI's images.generate; with `stream: true`, server-sent events (partial images,
    then the images)."""
    wire = translate.to_submission(body, caller, request.headers.get("idempotency-key"),
                                   translate.retries_taken(
                                       request.headers.get("x-stainless-retry-count")))
    return await _answer(request, caller, port, wire, GENERATION_EVENTS)


GENERATION_EVENTS = (translate.PARTIAL_EVENT, translate.COMPLETED_EVENT)
EDIT_PATH = "/v1/images/edits"
MAX_FILE_PARTS = 64  # past it the body is refused unparsed; 17 to 64 images get a clear error
MAX_TEXT_FIELDS = 64
MAX_TEXT_FIELD_BYTES = 1024 * 1024  # a prompt is at most 32,000 characters


def _edit_form_schema() -> dict[str, Any]:
    fields = model_schema(ImagesEditRequest)
    binary = {"type": "string", "format": "binary"}
    properties = {
        "image": {**binary, "description": "the image to edit (PNG, JPEG or WEBP); or image[]"},
        "image[]": {"type": "array", "items": binary, "maxItems": edits.MAX_IMAGES},
        "mask": {**binary, "description": "transparent pixels are repainted; the image's size"},
        **{k: v for k, v in fields.get("properties", {}).items() if k != "loras"},
    }
    return {"type": "object", "properties": properties, "required": ["prompt"]}


@router.post(EDIT_PATH, summary="Edit an image",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "multipart/form-data": {"schema": _edit_form_schema()}}},
                 **security(BEARER)},
             responses=responses(ImagesResponse, ErrorBody, (*ERRORS, 415)),
             response_model=ImagesResponse)
async def edit(
    request: Request, caller: Authenticated, port: CorePort
) -> JSONResponse | StreamingResponse:
    """OpenAI's images.edit: one image, and a mask to repaint part of it; with `stream: true`,
    server-sent events (image_edit.partial_image, then image_edit.completed)."""
    body = await _edit_body(request, port)
    wire = edits.to_submission(body, caller, request.headers.get("idempotency-key"),
                               translate.retries_taken(
                                   request.headers.get("x-stainless-retry-count")))
    return await _answer(request, caller, port, wire, edits.EDIT_EVENTS)


async def _edit_body(request: Request, port: Port) -> edits.EditBody:
    """A multipart body as the SDKs send it, or the JSON body of OpenAI's newer reference."""
    limits = port.limits
    content_type = request.headers.get("content-type")
    if not is_form(content_type):
        if not is_json(content_type):
            raise BodyRefused(415, "unsupportedContentType", "the body must be "
                              "multipart/form-data (as the openai SDKs send it), a URL-encoded "
                              "form or JSON", "Content-Type")
        return edits.from_json(await json_object(request))
    try:
        form = await read_form(request, limits.max_body_bytes, limits.body_timeout,
                               max_files=MAX_FILE_PARTS, max_fields=MAX_TEXT_FIELDS,
                               max_field_bytes=MAX_TEXT_FIELD_BYTES)
    except BodyTooLarge:
        raise PayloadTooLarge(limits.max_body_bytes) from None
    try:
        return await edits.from_form(form)
    finally:
        await form.close()


async def _answer(request: Request, caller: Caller, port: Port, wire: translate.ImagesRequest,
                  kinds: tuple[str, str]) -> JSONResponse | StreamingResponse:
    """The held request's reply: the images (URLs or base64), or their event stream."""
    if wire.stream:
        # Every event is base64: the stream's bytes count against the caller's reply budget
        # from the start (an estimate by size, format and count; released when it ends).
        reserve_reply(request, caller, translate.stream_bytes(wire.submission), "stream",
                      "or ask for fewer partial_images or images, or stream: false with "
                      "response_format url")
        job, _ = await port.submit(wire.submission)
        return StreamingResponse(
            _events(port, job, kinds), media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no",
                     "x-request-id": str(uuid.uuid4()), "x-easel-job-id": job.id,
                     **ignored_header(wire.ignored), **stand_in_header(job)})
    job = await port.run(wire.submission)
    if wire.b64_json:  # reserved before the reply is built: a 429 when too much is unread
        reserve_reply(request, caller, base64_bytes(delivered_images(job)), "response_format",
                      "or ask for response_format url")
    reply = await translate.render(job, port.images, wire.b64_json)
    return JSONResponse(reply, headers={"x-request-id": str(uuid.uuid4()),
                                        "x-easel-job-id": job.id, **ignored_header(wire.ignored),
                                        **prompt_header(job), **stand_in_header(job)})


async def _events(port: Port, job: Job, kinds: tuple[str, str]) -> AsyncIterator[str]:
    """OpenAI's image stream: each round of partial images as the worker stores it, then one
    completed event per delivered image; an `error` event when the job fails. A client that
    disconnects leaves the job running (GET /easel/jobs/{id} finds it)."""
    sent = 0
    async with contextlib.aclosing(with_keep_alives(port.watch(job))) as updates:
        async for current in updates:
            if current is None:  # queued, or between events: a comment keeps proxies open
                yield KEEP_ALIVE
                continue
            async for event in _events_of(port, current, sent, kinds):
                yield event
            sent = max(sent, current.partials)
            if current.status.terminal:
                return


async def _events_of(port: Port, job: Job, sent: int,
                     kinds: tuple[str, str]) -> AsyncIterator[str]:
    """What one look at the job adds to the stream: the rounds of partial images stored
    since `sent`, and at its end the images (or the error)."""
    for round_ in range(sent, job.partials):
        for image in ordered_images(job):
            data = await port.images.partial_bytes(job, image, round_)
            if data is not None:  # withheld by the check
                yield translate.stream_event(kinds[0], job, data,
                                             partial_image_index=round_, image_index=image.index)
    if job.status.terminal:
        async for event in _final_events(port, job, kinds[1]):
            yield event


async def _final_events(port: Port, job: Job, completed: str) -> AsyncIterator[str]:
    if job.status is not JobStatus.COMPLETED:
        yield translate.stream_error(JobFailed(job))
        return
    blocked = all_withheld(job)
    if blocked is not None:
        yield translate.stream_error(blocked)
        return
    for image in delivered_images(job):
        yield translate.stream_event(completed, job,
                                     await port.images.image_bytes(image),
                                     image_index=image.index, usage=translate.completed_usage())


class ModelList(Open):
    object: str
    data: list[dict[str, Any]]


class ModelObject(Open):
    id: str
    object: str


@router.get("/v1/models", response_model=ModelList, summary="List models",
            openapi_extra=security(BEARER),
            responses=responses(ModelList, ErrorBody, (401, 404)))
async def list_models(_caller: Authenticated, port: CorePort) -> JSONResponse:
    """`client.models.list()`: every catalog id this endpoint takes, and the generic ones."""
    return JSONResponse({"object": "list", "data": translate.model_objects(port.catalog)})


@router.get("/v1/models/{model_id:path}", response_model=ModelObject,
            summary="Retrieve a model", openapi_extra=security(BEARER),
            responses=responses(ModelObject, ErrorBody, (401, 404)))
async def retrieve_model(model_id: str, _caller: Authenticated, port: CorePort) -> JSONResponse:
    """`client.models.retrieve(id)`; ids with slashes (AIML's `google/...`) included."""
    found = [m for m in translate.model_objects(port.catalog) if m["id"] == model_id]
    if not found:
        raise EaselError(ErrorKind.UNKNOWN_MODEL,
                         f"The model '{model_id[:200]}' does not exist", "model")
    return JSONResponse(found[0])


def dialect() -> Dialect:
    """This dialect as the app mounts it (api/app.py lists every dialect). Every path under
    /v1 but Runware's own /v1 is OpenAI's: an unknown one (images.edit, chat) gets its shape.
    Its clients choose job ids (the Idempotency-Key header)."""
    return Dialect(translate.DIALECT, router, translate.ERRORS, ("/v1",), render_error,
                   chooses_ids=True)
