"""Google Imagen `:predict`, Gemini API and Vertex paths (protocols.md §5). Synchronous."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from easel.api.auth import bearer_token, key_is_valid
from easel.api.deps import Services, get_services
from easel.api.dialects.common import ignored_header, read_json_object
from easel.api.dialects.google import translate as gg
from easel.api.dialects.google.schemas import PredictRequest
from easel.api.openapi import ERRORS, Open, model_schema, request_body, responses
from easel.domain.errors import EaselError
from easel.domain.job import JobStatus

router = APIRouter(tags=["google"])


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
    if not key_is_valid(services, _api_key(request)):
        return _error(401, "API key not valid. Please pass a valid API key.")
    try:
        model_id, action = gg.split_model_action(model_action)
        if action != "predict":
            return _error(404, f"method {action!r} is not served here; use :predict")
        body = await read_json_object(request, services.settings.max_body_bytes)
        sub = gg.to_submission(services.catalog, model_id, body, default_count)
        job, _ = await services.jobs.submit(sub.request, dialect=gg.DIALECT)
    except EaselError as err:
        status, payload = gg.easel_error_body(err)
        return JSONResponse(payload, status_code=status)
    hold = services.settings.sync_timeout
    job = await services.jobs.wait(job.id, timeout=hold)
    if job.status is JobStatus.FAILED:
        return _error(500, job.error_message or "image generation failed")
    if job.status is not JobStatus.COMPLETED:
        return _error(504, f"the images were not ready within {hold:g}s (job {job.id})")
    try:
        reply = await gg.render(job, services.jobs)
    except EaselError as err:
        status, payload = gg.easel_error_body(err)
        return JSONResponse(payload, status_code=status)
    return JSONResponse(reply, headers={"x-easel-job-id": job.id, **ignored_header(sub.ignored)})
