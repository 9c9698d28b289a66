"""Google Imagen `:predict`, Gemini API and Vertex paths (protocols.md §5). Synchronous."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from easel.api.auth import authenticate, bearer_token
from easel.api.deps import Services, get_services
from easel.api.dialects.common import Dialect, ignored_header, read_json_object, retry_headers
from easel.api.dialects.google import translate as gg
from easel.api.dialects.google.schemas import PredictRequest
from easel.api.openapi import ERRORS, Open, model_schema, request_body, responses
from easel.domain.errors import EaselError, ErrorKind
from easel.services.jobs import Draining, JobFailed, StillRunning

router = APIRouter(tags=["google"])
PREFIXES = ("/v1beta", "/v1beta1", "/v1/projects")


def _error(status: int, message: str, parameter: str | None = None) -> JSONResponse:
    return JSONResponse(gg.error_body(status, message, parameter), status_code=status)


def _api_key(request: Request) -> str | None:
    """Gemini API: x-goog-api-key or ?key=; Vertex: an OAuth bearer token."""
    return (
        request.headers.get("x-goog-api-key")
        or request.query_params.get("key")
        or bearer_token(request.headers.get("authorization"))
    )


class PredictResponse(Open):
    predictions: list[dict[str, Any]]


class ErrorBody(Open):
    error: dict[str, Any]


DOCS: dict[str, Any] = {
    "openapi_extra": request_body(model_schema(PredictRequest)),
    "responses": responses(PredictResponse, ErrorBody, ERRORS),
    "response_model": PredictResponse,
}


@router.post("/v1beta/models/{model_action}", **DOCS)
async def predict_gemini(
    model_action: str, request: Request, services: Services = Depends(get_services)
) -> JSONResponse:
    return await _predict(model_action, request, services, gg.DEFAULT_COUNT_GEMINI)


@router.post(
    "/v1/projects/{project}/locations/{location}/publishers/google/models/{model_action}", **DOCS
)
async def predict_vertex(
    project: str,
    location: str,
    model_action: str,
    request: Request,
    services: Services = Depends(get_services),
) -> JSONResponse:
    return await _predict(model_action, request, services, gg.DEFAULT_COUNT_VERTEX)


async def _predict(
    model_action: str, request: Request, services: Services, default_count: int
) -> JSONResponse:
    caller = authenticate(services, request, _api_key(request))
    if caller is None:
        return _error(401, "API key not valid. Please pass a valid API key.")
    headers: dict[str, str] = {}
    model_id = ""
    try:
        model_id, action = gg.split_model_action(model_action)
        if action != "predict":
            return _error(404, f"method {action!r} is not served here; use :predict")
        body = await read_json_object(request, services.settings.max_body_bytes,
                                           services.settings.body_timeout)
        call = gg.to_submission(model_id, body, default_count, caller)
        job = await services.jobs.run(call.submission, services.settings.sync_timeout)
        headers["x-easel-job-id"] = job.id
        reply = await gg.render(job, services.artifacts)
    except (JobFailed, StillRunning, Draining) as err:
        headers["x-easel-job-id"] = err.job.id
        return _easel_error(err, headers)
    except EaselError as err:
        if err.kind is ErrorKind.UNKNOWN_MODEL:
            err = gg.unknown_model(model_id, services.catalog.model_ids)
        return _easel_error(err, headers)
    return JSONResponse(reply, headers={**headers, **ignored_header(call.ignored)})


def _easel_error(err: EaselError, headers: dict[str, str]) -> JSONResponse:
    status, payload = gg.easel_error_body(err)
    return JSONResponse(payload, status_code=status, headers={**headers, **retry_headers(err)})


def dialect() -> Dialect:
    """This dialect as the app mounts it (api/app.py lists every dialect)."""
    return Dialect(gg.DIALECT, router, gg.ERRORS, PREFIXES, gg.refusal)
