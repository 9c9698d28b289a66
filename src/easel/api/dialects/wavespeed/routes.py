"""WaveSpeed v3 routes: submit per model id, poll by prediction id (protocols.md §2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from easel.api.auth import authenticate, bearer_token
from easel.api.deps import Services, get_services
from easel.api.dialects.common import Dialect, read_json_object, retry_headers
from easel.api.dialects.wavespeed import translate as ws
from easel.api.dialects.wavespeed.schemas import ImagenInput
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
from easel.domain.job import Job
from easel.domain.submission import Caller
from easel.services.jobs.service import JobFailed, StillRunning

router = APIRouter(tags=["wavespeed"])
KEY = security(BEARER)

# Bodies that work as they are with the default catalog (tests/server/test_openapi_reference.py
# posts each one) on the model ids below.
EXAMPLES = {
    "sync": example("Wait for the image (enable_sync_mode)", {
        "prompt": "a red fox in fresh snow", "aspect_ratio": "1:1", "num_images": 1,
        "enable_sync_mode": True}),
    "async": example("Submit, then poll /api/v3/predictions/{id}/result", {
        "prompt": "a lighthouse at dusk, oil painting", "aspect_ratio": "16:9",
        "num_images": 2, "output_format": "png", "seed": 7}),
}
MODEL_IDS = {
    "fast": example("Imagen 4 Fast", "google/imagen4-fast"),
    "standard": example("Imagen 4", "google/imagen4"),
    "ultra": example("Imagen 4 Ultra", "google/imagen4-ultra"),
}


class Envelope(Open):
    code: int
    message: str
    data: dict[str, Any] | None = None


class ErrorBody(Open):
    code: int
    message: str


class ListEnvelope(Open):
    code: int
    message: str
    data: list[dict[str, Any]]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ws.error_body(status, message), status_code=status, headers=headers)


def _caller(services: Services, request: Request) -> Caller | JSONResponse:
    caller = authenticate(services, request, bearer_token(request.headers.get("authorization")))
    if caller is not None:
        return caller
    return _error(401, "Invalid or missing API key (send Authorization: Bearer <key>)")


def _refused(
    services: Services, model_id: str, err: EaselError, created: datetime
) -> JSONResponse:
    if ws.is_refused_as_task(err):
        data = ws.refusal_data(model_id, err, created, services.settings.base_url,
                               services.secret)
        return JSONResponse(ws.envelope(data))
    return _error(ws.ERRORS.status(err), err.message, retry_headers(err))


async def _reply(services: Services, job: Job) -> dict[str, Any]:
    outputs = await ws.outputs(job, services.artifacts)
    return ws.job_data(job, services.settings.base_url, outputs)


# WaveSpeed endpoints easel does not offer: answered plainly, before the catch-all submit
# route would take them for model ids.
NOT_OFFERED = {
    "/api/v3/media/upload/binary": "media uploads (easel generates images from text only)",
    "/api/v3/media/uploads": "media uploads (easel generates images from text only)",
    "/api/v3/model/pricing": "the pricing endpoint (prices are in `easel models`)",
    "/api/v3/predictions": "the prediction history (use `easel jobs`)",
    "/api/v3/balance": "an account balance (a self-hosted server bills nothing)",
}


def _not_offered(what: str) -> Any:
    async def refuse(request: Request) -> JSONResponse:
        return _error(404, f"easel does not offer {what}: {request.method} {request.url.path}")

    return refuse


for _path, _what in NOT_OFFERED.items():
    router.add_api_route(_path, _not_offered(_what), methods=["POST", "GET"],
                         include_in_schema=False)


@router.get("/api/v3/webhook/secret", response_model=Envelope, summary="Webhook secret",
            openapi_extra=KEY,
            responses=responses(Envelope, ErrorBody, ERRORS))
async def webhook_secret(
    request: Request, services: Services = Depends(get_services)
) -> JSONResponse:
    """The secret this caller's webhooks are signed with (`webhook-signature: v3,<hex>`)."""
    caller = _caller(services, request)
    if isinstance(caller, JSONResponse):
        return caller
    secret = ws.caller_secret(services.webhook_signing_root, caller.principal)
    return JSONResponse(ws.envelope({"secret": secret}))


@router.get("/api/v3/models", response_model=ListEnvelope, summary="List models",
            openapi_extra=KEY,
            responses=responses(ListEnvelope, ErrorBody, ERRORS))
async def models(request: Request, services: Services = Depends(get_services)) -> JSONResponse:
    """The WaveSpeed model ids easel serves, with their tier, backend and price."""
    caller = _caller(services, request)
    if isinstance(caller, JSONResponse):
        return caller
    return JSONResponse(ws.envelope(ws.model_list(services.catalog)))


# Before the catch-all submit route, which would take this path for a model id.
@router.post("/api/v3/predictions/{prediction_id}/cancel", response_model=Envelope,
             summary="Cancel a prediction", openapi_extra=KEY,
             responses=responses(Envelope, ErrorBody, ERRORS))
async def cancel(
    prediction_id: str, request: Request, services: Services = Depends(get_services)
) -> JSONResponse:
    """Cancel a queued or running prediction; it ends `cancelled` (a running one within one
    denoising step). Polling it, or its webhook, then says so."""
    caller = _caller(services, request)
    if isinstance(caller, JSONResponse):
        return caller
    try:
        job = await services.jobs.cancel(ws.job_id_of(prediction_id), caller)
    except EaselError:
        return _error(404, f"prediction {prediction_id[:100]} not found")
    return JSONResponse(ws.envelope(await _reply(services, job)))


@router.post("/api/v3/{model_id:path}", summary="Submit a prediction",
             openapi_extra={**request_body(model_schema(ImagenInput), EXAMPLES), **KEY},
             responses=responses(Envelope, ErrorBody, ERRORS), response_model=Envelope)
async def submit(
    model_id: Annotated[str, Path(openapi_examples=MODEL_IDS)],
    request: Request,
    webhook: str | None = None,
    services: Services = Depends(get_services),
) -> JSONResponse:
    caller = _caller(services, request)
    if isinstance(caller, JSONResponse):
        return caller
    created = datetime.now(UTC)
    try:
        body = await read_json_object(request, services.settings.max_body_bytes,
                                           services.settings.body_timeout)
        call = ws.to_submission(model_id, body, webhook, caller)
        if not call.sync:
            job, _ = await services.jobs.submit(call.submission)
            return JSONResponse(ws.envelope(await _reply(services, job)))
        job = await services.jobs.run(call.submission, services.settings.sync_timeout)
    except (JobFailed, StillRunning) as err:  # sync mode: the task itself says what happened
        data = await _reply(services, err.job)
        if isinstance(err, StillRunning):
            data = ws.sync_timeout_data(data, err.waited)
        return JSONResponse(ws.envelope(data))
    except EaselError as err:
        return _refused(services, model_id, err, created)
    return JSONResponse(ws.envelope(await _reply(services, job)))


@router.get("/api/v3/predictions/{prediction_id}/result", response_model=Envelope,
            summary="Poll a prediction", openapi_extra=KEY,
            responses=responses(Envelope, ErrorBody, ERRORS))
@router.get("/api/v3/predictions/{prediction_id}", response_model=Envelope,
            summary="Poll a prediction (the same, without /result)", openapi_extra=KEY,
            responses=responses(Envelope, ErrorBody, ERRORS))
async def result(
    prediction_id: str, request: Request, services: Services = Depends(get_services)
) -> JSONResponse:
    caller = _caller(services, request)
    if isinstance(caller, JSONResponse):
        return caller
    base_url = services.settings.base_url
    if (data := ws.decode_refusal(prediction_id, base_url, services.secret)) is not None:
        return JSONResponse(ws.envelope(data))
    job = await services.jobs.get(ws.job_id_of(prediction_id), caller)
    if job is None:
        return _error(404, f"prediction {prediction_id[:100]} not found")
    try:
        return JSONResponse(ws.envelope(await _reply(services, job)))
    except EaselError as err:  # an image expired between the read and the encode
        return _error(ws.ERRORS.status(err), err.message)


def dialect() -> Dialect:
    """This dialect as the app mounts it (api/app.py lists every dialect)."""
    return Dialect(ws.DIALECT, router, ws.ERRORS, ("/api/v3",), ws.refusal, ws.webhook_body,
                   sign_webhook=ws.sign_webhook)
