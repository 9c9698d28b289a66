"""WaveSpeed v3 routes: submit per model id, poll by prediction id (protocols.md §2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from easel.api.auth import key_is_valid
from easel.api.deps import Services, get_services
from easel.api.dialects.common import bearer_token, read_json_object
from easel.api.dialects.wavespeed import translate as ws
from easel.api.dialects.wavespeed.schemas import ImagenInput
from easel.api.openapi import ERRORS, Open, model_schema, request_body, responses
from easel.domain.errors import EaselError
from easel.domain.job import Job
from easel.services.delivery import register_renderer

router = APIRouter(tags=["wavespeed"])


class Envelope(Open):
    code: int
    message: str
    data: dict[str, Any] | None = None


class ErrorBody(Open):
    code: int
    message: str

register_renderer(ws.DIALECT, ws.webhook_body)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(ws.error_body(status, message), status_code=status)


def _unauthorized(services: Services, request: Request) -> JSONResponse | None:
    if key_is_valid(services, bearer_token(request)):
        return None
    return _error(401, "Invalid or missing API key (send Authorization: Bearer <key>)")


def _refused(
    services: Services, model_id: str, err: EaselError, created: datetime
) -> JSONResponse:
    if ws.is_refused_as_task(err):
        data = ws.refusal_data(model_id, err, created, services.settings.base_url)
        return JSONResponse(ws.envelope(data))
    return _error(ws.error_status(err), err.message)


async def _reply(services: Services, job: Job) -> dict[str, Any]:
    outputs = await ws.outputs(job, services.jobs)
    return ws.job_data(job, services.settings.base_url, outputs)


@router.post("/api/v3/{model_id:path}", openapi_extra=request_body(model_schema(ImagenInput)),
             responses=responses(Envelope, ErrorBody, ERRORS), response_model=Envelope)
async def submit(
    model_id: str,
    request: Request,
    webhook: str | None = None,
    services: Services = Depends(get_services),
) -> JSONResponse:
    if (refused := _unauthorized(services, request)) is not None:
        return refused
    known = {m.id for m in services.catalog.models_for(ws.PROVIDER)}
    if model_id not in known:
        return _error(404, f"model {model_id!r} not found; models served here: "
                           f"{', '.join(sorted(known))}")
    created = datetime.now(UTC)
    try:
        body = await read_json_object(request, services.settings.max_body_bytes)
        sub = ws.to_submission(services.catalog, model_id, body, webhook)
    except EaselError as err:
        return _refused(services, model_id, err, created)
    try:  # a refused webhook target is an HTTP 400 (SSRF policy), never a queued task
        await services.jobs.check_outbound(
            sub.options.get("webhook"), "webhook" if webhook is not None else "webhook_url")
    except EaselError as err:
        return _error(400, err.message)
    try:
        job, _ = await services.jobs.submit(sub.request, dialect=ws.DIALECT, options=sub.options)
    except EaselError as err:
        return _refused(services, model_id, err, created)
    if not sub.sync:
        return JSONResponse(ws.envelope(await _reply(services, job)))
    hold = services.settings.sync_timeout
    job = await services.jobs.wait(job.id, timeout=hold)
    data = await _reply(services, job)
    if not job.status.terminal:
        data = ws.sync_timeout_data(data, hold)
    return JSONResponse(ws.envelope(data))


@router.get("/api/v3/predictions/{prediction_id}/result", response_model=Envelope,
            responses=responses(Envelope, ErrorBody, ERRORS))
@router.get("/api/v3/predictions/{prediction_id}", include_in_schema=False)
async def result(
    prediction_id: str, request: Request, services: Services = Depends(get_services)
) -> JSONResponse:
    if (refused := _unauthorized(services, request)) is not None:
        return refused
    base_url = services.settings.base_url
    if (data := ws.decode_refusal(prediction_id, base_url)) is not None:
        return JSONResponse(ws.envelope(data))
    job = await services.jobs.get(prediction_id)
    if job is None:
        return _error(404, f"prediction {prediction_id} not found")
    try:
        return JSONResponse(ws.envelope(await _reply(services, job)))
    except EaselError as err:  # an image expired between the read and the encode
        return _error(ws.error_status(err), err.message)
