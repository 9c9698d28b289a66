"""Google Imagen `:predict` on every path the google-genai releases use (protocols.md §5, §11):

- Gemini API: `/{v1,v1beta,v1alpha}/models/{model}:predict`, key in x-goog-api-key or ?key=;
- Vertex AI: `/{v1,v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{model}:predict`
  with an OAuth bearer token (google-genai 2.x/3.x default to v1beta1), and the express-mode
  `/{v}/publishers/google/models/{model}:predict` with an API key.

Synchronous. The model listings (`models.list`, `models.get`) are served on the same paths."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from easel.api.caller import API_KEY, BEARER, Authenticated, CorePort
from easel.api.dialects.common import (
    Dialect,
    base64_bytes,
    delivered_images,
    ignored_header,
    json_object,
    prompt_header,
    reserve_reply,
    scope_headers,
    stand_in_header,
)
from easel.api.dialects.google import gemini, translate
from easel.api.dialects.google.schemas import PredictRequest
from easel.api.limits import HTTPRefusal
from easel.api.openapi import (
    BEARER as BEARER_SCHEME,
)
from easel.api.openapi import (
    ERRORS,
    GOOGLE_KEY_HEADER,
    GOOGLE_KEY_QUERY,
    Open,
    example,
    model_schema,
    request_body,
    responses,
    security,
)
from easel.catalog import Model, Size
from easel.domain.errors import EaselError, ErrorKind, Unauthenticated
from easel.domain.job import Job, JobStatus
from easel.domain.outcomes import JobFailed
from easel.domain.submission import AspectRatioSize, Caller, InputShapeSize, SizeChoice
from easel.services.port import Port

GEMINI_VERSIONS = ("v1beta", "v1alpha", "v1")
VERTEX_VERSIONS = ("v1beta1", "v1")
VERTEX_PROJECT = "projects/{project}/locations/{location}/"
PREFIXES = ("/v1beta", "/v1beta1", "/v1alpha", "/v1/projects", "/v1/publishers")
GOOGLE_METHODS = ("predict", gemini.GENERATE, gemini.STREAM)  # no OpenAI path has a `:method`


def google_request(path: str, headers: Mapping[str, str], query: str) -> bool:
    """Whether a request comes from a Google client although its path is shared (`/v1/models`
    is also OpenAI's): google-genai always sends x-goog-api-client; a key may ride in ?key=;
    a raw REST call with an OAuth bearer (or no credential) is told apart by its method."""
    return (
        "x-goog-api-key" in headers
        or "x-goog-api-client" in headers
        or any(part.startswith("key=") for part in query.split("&"))
        or any(f":{method}" in path for method in GOOGLE_METHODS)
        or "/publishers/google/" in path
    )


class GoogleOnlyRoute(APIRoute):
    """A route on a path another dialect serves too (`GET /v1/models`): it matches only
    requests that carry Google's credentials or client header."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.NONE:
            return match, child
        query = scope.get("query_string", b"").decode("latin-1")
        if not google_request(scope["path"], scope_headers(scope), query):
            return Match.NONE, {}
        return match, child


class PredictResponse(Open):
    predictions: list[dict[str, Any]]


class ErrorBody(Open):
    error: dict[str, Any]


class ModelList(Open):
    models: list[dict[str, Any]] | None = None
    publisherModels: list[dict[str, Any]] | None = None


ONE_MODEL = ("Every Imagen model id this server serves (`models.list`). "
             "`GET` on `.../models/{model}` (e.g. `imagen-4.0-fast-generate-001`) returns one "
             "of them (`models.get`), or 404 in Google's shape.")

# Bodies that work as they are with the default catalog (tests/server/test_openapi_reference.py
# posts each one), and the path parameters that go with them.
EXAMPLES = {
    "one": example("One square image", {
        "instances": [{"prompt": "a red fox in fresh snow"}],
        "parameters": {"sampleCount": 1, "aspectRatio": "1:1"}}),
    "options": example("Two JPEG images, 16:9, a fixed seed (needs addWatermark false)", {
        "instances": [{"prompt": "a lighthouse at dusk, oil painting"}],
        "parameters": {"sampleCount": 2, "aspectRatio": "16:9", "seed": 7, "addWatermark": False,
                       "outputOptions": {"mimeType": "image/jpeg", "compressionQuality": 90}}}),
}
PATH_EXAMPLES = {"model_action": "imagen-4.0-fast-generate-001:predict",
                 "model": "imagen-4.0-fast-generate-001", "project": "my-project",
                 "location": "us-central1"}
# Any key form works on every path; Vertex clients send the OAuth token's place, a bearer.
GEMINI_KEYS = security(GOOGLE_KEY_HEADER, GOOGLE_KEY_QUERY, BEARER_SCHEME)
VERTEX_KEYS = security(BEARER_SCHEME, GOOGLE_KEY_HEADER, GOOGLE_KEY_QUERY)
KEY_ERRORS = (400, 401, 403)  # API_KEY_INVALID, UNAUTHENTICATED, unregistered caller

DOCS: dict[str, Any] = {
    "openapi_extra": request_body(model_schema(PredictRequest), EXAMPLES),
    "responses": responses(PredictResponse, ErrorBody, ERRORS),
    "response_model": PredictResponse,
}


METHODS = ("`{model}:predict` for the Imagen ids (the body below); `{model}:generateContent` "
           "and `{model}:streamGenerateContent?alt=sse` for the Gemini image ids "
           "(`gemini-2.5-flash-image`, `gemini-3.1-flash-image`, `gemini-3-pro-image`), "
           "with the Gemini API's body (docs/gemini.md).")
VERTEX_PATH = "/publishers/google/models"  # in every Vertex AI path, express mode's too


def render_error(err: EaselError, request: Request) -> JSONResponse:
    """Every failure of a whole request as a Google RPC error, with the job's id when a job
    exists. A missing or bad key is what Google answers: no credential at all on the Gemini
    API is 403 PERMISSION_DENIED ("unregistered callers"); a wrong API key (x-goog-api-key or
    ?key=) is 400 API_KEY_INVALID; a bearer token, or no credential on a Vertex path (which
    wants an OAuth token), is 401 UNAUTHENTICATED."""
    job = getattr(err, "job", None)
    headers = {"x-easel-job-id": job.id} if job is not None else {}
    if isinstance(err, Unauthenticated):
        vertex = VERTEX_PATH in request.url.path
        if err.credential != API_KEY and (vertex or err.credential == BEARER):
            return JSONResponse(translate.unauthenticated_body(), status_code=401)
        if err.credential is None and not vertex:
            return JSONResponse(translate.unregistered_caller_body(), status_code=403)
        service = translate.VERTEX_SERVICE if vertex else translate.GEMINI_SERVICE
        return JSONResponse(translate.api_key_invalid_body(service), status_code=400)
    status = translate.ERRORS.status(err)
    body = translate.error_body(status, err.message, err.parameter)
    return JSONResponse(body, status_code=status, headers=headers)


async def _model_action(request: Request, port: Port, caller: Caller, vertex: bool
                        ) -> Response:
    """`{model}:{method}`: Imagen's :predict, or the Gemini image models' generateContent."""
    model_id, action = translate.split_model_action(request.path_params["model_action"])
    if action == "predict":
        return await _predict(request, port, caller, model_id, vertex)
    if action in (gemini.GENERATE, gemini.STREAM):
        return await _generate_content(request, port, caller, model_id, action == gemini.STREAM,
                                       vertex)
    raise EaselError(ErrorKind.NOT_FOUND, f"easel does not offer the method {action[:40]!r}; "
                     "use :predict (Imagen) or :generateContent (Gemini image models)")


async def _predict(request: Request, port: Port, caller: Caller, model_id: str,
                   vertex: bool) -> JSONResponse:
    default_count = translate.DEFAULT_COUNT_VERTEX if vertex else translate.DEFAULT_COUNT_GEMINI
    call = translate.to_submission(model_id, await json_object(request), default_count, caller)
    job = await port.run(call.submission)
    # Reserved before the reply is built: a 429 when too much is unread.
    reserve_reply(request, caller, base64_bytes(delivered_images(job)), "parameters.sampleCount",
                  "or ask for fewer images at a time")
    reply = await translate.render(job, port.images)
    return JSONResponse(reply, headers={"x-easel-job-id": job.id, **ignored_header(call.ignored),
                                        **prompt_header(job), **stand_in_header(job)})


async def _generate_content(request: Request, port: Port, caller: Caller, model_id: str,
                            stream: bool, vertex: bool) -> Response:
    model = port.model(model_id, gemini.PROVIDER)
    call = gemini.to_submission(model, await json_object(request), caller, vertex)
    if stream:
        return await _stream_content(request, port, caller, call)
    try:
        job = await port.run(call.submission)
    except EaselError as err:
        if _prompt_blocked(err):
            return JSONResponse(gemini.blocked(call, err))
        raise
    reserve_reply(request, caller, base64_bytes(delivered_images(job)),
                  "generationConfig.candidateCount", "or ask for fewer candidates")
    reply = await gemini.render(job, call, port.images)
    return JSONResponse(reply, headers={"x-easel-job-id": job.id, **ignored_header(call.ignored),
                                        **stand_in_header(job)})


def _prompt_blocked(err: EaselError) -> bool:
    """The operator's block list refused the prompt (before any job): Google's promptFeedback."""
    return err.kind is ErrorKind.CONTENT_BLOCKED and not isinstance(err, JobFailed)


async def _stream_content(request: Request, port: Port, caller: Caller,
                          call: gemini.GeminiCall) -> Response:
    """`:streamGenerateContent`: progress as thought parts (when the client asked for
    thoughts), then the answer; an error mid-stream is a chunk in Google's error shape. With
    `?alt=sse` (what google-genai asks for) each chunk is an SSE event; without it, as Google
    answers raw REST (Vertex's curl examples), the chunks are one JSON array."""
    generation = call.submission.generation
    size = _largest_reply(call.model, generation.size)
    reserve_reply(request, caller, size.width * size.height * 4 * generation.num_images,
                  "generationConfig.candidateCount", "or ask for fewer candidates")
    sse = request.query_params.get("alt") == "sse"
    frame, media_type = (_sse, "text/event-stream") if sse else (_json_array, "application/json")
    try:
        job, _ = await port.submit(call.submission)
    except EaselError as err:
        if not _prompt_blocked(err):
            raise
        blocked = _one(gemini.blocked(call, err))
        return StreamingResponse(frame(blocked), media_type=media_type)
    return StreamingResponse(frame(_content_chunks(port, job, call)), media_type=media_type,
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no",
                                      "x-easel-job-id": job.id,
                                      **ignored_header(call.ignored), **stand_in_header(job)})


def _largest_reply(model: Model, size: SizeChoice | None) -> Size:
    """The size of the images a stream will send, at most (an edit's input, not yet read, picks
    among its resolution's sizes): what the reply reserves before the job is submitted."""
    names = gemini.NAMES("aspect_ratio"), gemini.NAMES("resolution")
    if isinstance(size, AspectRatioSize):
        return model.size_for(size.aspect_ratio, size.resolution, *names)
    if isinstance(size, InputShapeSize):
        return model.largest_at(size.resolution, names[1])
    return max(model.sizes, key=lambda s: s.width * s.height)  # any of the model's sizes


async def _content_chunks(port: Port, job: Job, call: gemini.GeminiCall
                          ) -> AsyncIterator[dict[str, Any]]:
    said = None
    current = job
    async with contextlib.aclosing(port.watch(job)) as updates:
        async for current in updates:
            if current.status.terminal:
                break
            note = gemini.progress_note(current)
            if call.thoughts and note != said:
                said = note
                yield gemini.thought(note, call, job)
    if current.status is not JobStatus.COMPLETED:
        failure = JobFailed(current)
        status = translate.ERRORS.status(failure)
        yield translate.error_body(status, failure.message)
        return
    for chunk in await gemini.chunks(current, call, port.images):
        yield chunk


async def _one(body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield body


def _dump(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(',', ':'))


async def _sse(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    async for body in chunks:
        yield f"data: {_dump(body)}\r\n\r\n"


async def _json_array(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    """The chunks as one JSON array, each sent as soon as it is known."""
    opening = "["
    async for body in chunks:
        yield f"{opening}{_dump(body)}"
        opening = ",\r\n"
    yield "[]" if opening == "[" else "]"


# The handlers read their path parameters from the request: the same handler serves paths
# with and without a project and location.

Serve = Callable[[Request, Port, Caller, bool], Awaitable[Response]]


def _endpoint(serve: Serve, vertex: bool) -> Any:
    async def endpoint(request: Request, caller: Authenticated, port: CorePort) -> Any:
        return await serve(request, port, caller, vertex)

    return endpoint


async def _list_models(
    _request: Request, port: Port, _caller: Caller, vertex: bool
) -> JSONResponse:
    models = [translate.model_resource(m, vertex, port.facts(m.backend))
              for m in translate.served_models(port.catalog)]
    models += [gemini.model_resource(m, vertex, translate.describe(m, port.facts(m.backend)))
               for m in gemini.served_models(port.catalog)]
    return JSONResponse({"publisherModels" if vertex else "models": models})


async def _get_model(request: Request, port: Port, _caller: Caller, vertex: bool) -> JSONResponse:
    model_id = request.path_params["model"].removeprefix("models/")
    if ":" in model_id:  # a method such as :predict, asked for with GET
        raise HTTPRefusal(405, "methodNotAllowed",
                          f"{model_id.partition(':')[2][:40]} takes POST, not GET", None)
    if model_id in {m.id for m in gemini.served_models(port.catalog)}:
        model = port.model(model_id, gemini.PROVIDER)
        description = translate.describe(model, port.facts(model.backend))
        return JSONResponse(gemini.model_resource(model, vertex, description))
    model = port.model(model_id, translate.PROVIDER)
    return JSONResponse(translate.model_resource(model, vertex, port.facts(model.backend)))


def _path_parameters(path: str) -> list[dict[str, Any]]:
    """The path's parameters, declared here: the handlers read them from the request."""
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"},
             "example": PATH_EXAMPLES[name]} for name in re.findall(r"{(\w+)}", path)]


def _add_routes(router: APIRouter, base: str, vertex: bool, shared: bool) -> None:
    """:predict, the listing and one model, under `base` (`/v1beta/models`, ...)."""
    route_class = GoogleOnlyRoute if shared else APIRoute
    path = f"{base}/{{model_action}}"
    api = ("Vertex AI express mode" if base.startswith(("/v1/publishers", "/v1beta1/publishers"))
           else "Vertex AI" if vertex else "Gemini API")
    keys = VERTEX_KEYS if vertex else GEMINI_KEYS
    docs = {**DOCS, "openapi_extra": {**DOCS["openapi_extra"], **keys,
                                      "parameters": _path_parameters(path)}}
    # The shared /v1/models paths are documented once, as OpenAI's; Google's v1beta stands
    # for them in the schema.
    router.add_api_route(path, _endpoint(_model_action, vertex), methods=["POST"],
                         route_class_override=route_class, include_in_schema=not shared,
                         summary=f"Generate images ({api})", description=METHODS, **docs)
    router.add_api_route(base, _endpoint(_list_models, vertex), methods=["GET"],
                         route_class_override=route_class, include_in_schema=not shared,
                         summary=f"List the Imagen models ({api})", description=ONE_MODEL,
                         response_model=ModelList,
                         responses=responses(ModelList, ErrorBody, KEY_ERRORS),
                         openapi_extra={**keys, "parameters": _path_parameters(base)})
    # Left out of the schema: its path differs from :predict's only in the parameter's name,
    # which OpenAPI counts as the same path. ONE_MODEL describes it.
    router.add_api_route(f"{base}/{{model}}", _endpoint(_get_model, vertex), methods=["GET"],
                         route_class_override=route_class, include_in_schema=False)


def build_router() -> APIRouter:
    router = APIRouter(tags=["google"])
    for version in GEMINI_VERSIONS:
        # /v1/models is OpenAI's too: there only requests from Google clients match.
        _add_routes(router, f"/{version}/models", vertex=False, shared=version == "v1")
    for version in VERTEX_VERSIONS:
        _add_routes(router, f"/{version}/{VERTEX_PROJECT}publishers/google/models", vertex=True,
                    shared=False)
        _add_routes(router, f"/{version}/publishers/google/models", vertex=True, shared=False)
    return router


def claims(path: str, headers: Mapping[str, str], query: str) -> bool:
    """A request under /v1 (but Runware's /v1 itself) that a Google client sent."""
    return (path.startswith("/v1") and path not in ("/v1", "/v1/")
            and google_request(path, headers, query))


def dialect() -> Dialect:
    """This dialect as the app mounts it (api/app.py lists every dialect). It comes before
    OpenAI's in the app, so that its Google-only routes on /v1/models are tried first."""
    return Dialect(translate.DIALECT, build_router(), translate.ERRORS, PREFIXES, render_error,
                   claims=claims)
