"""OpenAI images (+ AIML's Imagen fields): `POST /v1/images/generations` (protocols.md §3, §4).

The request is held until the images are ready (both APIs are synchronous)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from easel.api.auth import authenticate
from easel.api.deps import Services, get_services
from easel.api.dialects.common import (
    Dialect,
    bearer_token,
    ignored_header,
    prompt_header,
    read_json_object,
    retry_headers,
)
from easel.api.dialects.openai import translate as oa
from easel.api.dialects.openai.schemas import ImagesGenerateRequest
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
from easel.domain.errors import EaselError
from easel.services.jobs.service import Draining, JobFailed, StillRunning

router = APIRouter(tags=["openai"])

PATH = "/v1/images/generations"


class ImagesResponse(Open):
    created: int
    data: list[dict[str, Any]]


class ErrorBody(Open):
    error: dict[str, Any]


def _error(
    message: str, status: int, code: str, path: str, param: str | None = None,
    request_id: str | None = None,
) -> JSONResponse:
    """An error reply in OpenAI's shape (AIML's flat fields beside), with its x-request-id."""
    request_id = request_id or str(uuid.uuid4())
    body = oa.error_body(message, status, param=param, code=code, path=path,
                         request_id=request_id, now=datetime.now(UTC))
    return JSONResponse(body, status_code=status, headers={"x-request-id": request_id})


def _auth_error(path: str, request_id: str | None = None) -> JSONResponse:
    return _error("Incorrect or missing API key (send Authorization: Bearer <key>)", 401,
                  "invalid_api_key", path, request_id=request_id)


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
async def generate(request: Request, services: Services = Depends(get_services)) -> JSONResponse:
    request_id = str(uuid.uuid4())
    headers = {"x-request-id": request_id}

    def fail(err: EaselError) -> JSONResponse:
        status, body = oa.easel_error_body(err, path=PATH, request_id=request_id,
                                           now=datetime.now(UTC))
        return JSONResponse(body, status_code=status, headers={**headers, **retry_headers(err)})

    caller = authenticate(services, request, bearer_token(request))
    if caller is None:
        return _auth_error(PATH, request_id)
    try:
        body_json = await read_json_object(request, services.settings.max_body_bytes,
                                           services.settings.body_timeout)
        wire = oa.to_submission(body_json, caller, request.headers.get("idempotency-key"))
        job = await services.jobs.run(wire.submission, services.settings.sync_timeout)
        headers["x-easel-job-id"] = job.id
        tier = services.catalog.model(job.request.model).tier.name
        reply = await oa.render(job, services.artifacts, wire.b64_json, tier)
    except StillRunning as err:
        headers["x-easel-job-id"] = err.job.id
        err.message += "; retry with the same Idempotency-Key to pick them up"
        return fail(err)
    except (JobFailed, Draining) as err:
        headers["x-easel-job-id"] = err.job.id
        return fail(err)
    except EaselError as err:
        return fail(err)
    return JSONResponse(reply, headers={**headers, **ignored_header(wire.ignored),
                                        **prompt_header(job)})


class ModelList(Open):
    object: str
    data: list[dict[str, Any]]


class ModelObject(Open):
    id: str
    object: str


@router.get("/v1/models", response_model=ModelList, summary="List models",
            openapi_extra=security(BEARER),
            responses=responses(ModelList, ErrorBody, (401, 404)))
async def list_models(request: Request, services: Services = Depends(get_services)) -> JSONResponse:
    """`client.models.list()`: every catalog id this endpoint takes, and the generic ones."""
    if authenticate(services, request, bearer_token(request)) is None:
        return _auth_error("/v1/models")
    return JSONResponse({"object": "list", "data": oa.model_objects(services.catalog)})


@router.get("/v1/models/{model_id:path}", response_model=ModelObject,
            summary="Retrieve a model", openapi_extra=security(BEARER),
            responses=responses(ModelObject, ErrorBody, (401, 404)))
async def retrieve_model(
    model_id: str, request: Request, services: Services = Depends(get_services)
) -> JSONResponse:
    """`client.models.retrieve(id)`; ids with slashes (AIML's `google/...`) included."""
    path = f"/v1/models/{model_id}"
    if authenticate(services, request, bearer_token(request)) is None:
        return _auth_error(path)
    found = [m for m in oa.model_objects(services.catalog) if m["id"] == model_id]
    if found:
        return JSONResponse(found[0])
    return _error(f"The model '{model_id[:200]}' does not exist", 404, "model_not_found", path,
                  param="model")


def dialect() -> Dialect:
    """This dialect as the app mounts it (api/app.py lists every dialect). Every path under
    /v1 but Runware's own /v1 is OpenAI's: an unknown one (images.edit, chat) gets its shape."""
    return Dialect(oa.DIALECT, router, oa.ERRORS, ("/v1",), oa.refusal)
