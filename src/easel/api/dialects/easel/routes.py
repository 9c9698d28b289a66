"""easel's own routes under /easel: submit a job of any model id, list, show and cancel the
caller's jobs, stream a job's progress (server-sent events), and the catalog as forms need it
(docs/easel-api.md). The playground page and `easel jobs` are their clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from easel.api.caller import Authenticated, CorePort
from easel.api.dialects.common import (
    KEEP_ALIVE,
    Dialect,
    JsonBody,
    easel_error_body,
    with_keep_alives,
)
from easel.api.dialects.easel import translate
from easel.api.dialects.easel.schemas import JobInput
from easel.api.openapi import (
    BEARER,
    ERRORS,
    GOOGLE_KEY_HEADER,
    Open,
    example,
    model_schema,
    request_body,
    responses,
    security,
)
from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.job import Job, JobStatus
from easel.services.port import JobRef, Port

router = APIRouter(tags=["easel"])


class JobView(Open):
    id: str
    job: str
    status: str


class JobList(Open):
    jobs: list[dict[str, Any]]


class Catalog(Open):
    tiers: list[dict[str, Any]]


class Deliveries(Open):
    job: str
    deliveries: list[dict[str, Any]]


class EaselErrorBody(Open):
    error: dict[str, Any]


KEY = security(BEARER, GOOGLE_KEY_HEADER)  # the caller dependency takes either
# One server-sent event (before OpenAPI 3.2, an event stream's schema describes each event).
EVENT = {"type": "object", "required": ["event", "data"], "properties": {
    "event": {"type": "string", "enum": ["progress", "end"]},
    "id": {"type": "string", "description": "the job's step count"},
    "data": {"type": "string", "description": "the job view (as GET /easel/jobs/{job_id}), as "
                                              "JSON"}}}
# Bodies that work as they are with the default catalog (tests/server/test_openapi_reference.py
# posts each one): any catalog id, whatever dialect it belongs to.
EXAMPLES = {
    "fast": example("One image of Imagen 4 Fast's Google id", {
        "model": "imagen-4.0-fast-generate-001", "prompt": "a red fox in fresh snow",
        "aspect_ratio": "1:1", "num_images": 1}),
    "options": example("Two PNGs, 16:9, a fixed seed, with a task_id (idempotency)", {
        "model": "google/imagen4", "prompt": "a lighthouse at dusk, oil painting",
        "negative_prompt": "text, people", "aspect_ratio": "16:9", "num_images": 2,
        "seed": 7, "output_format": "png", "task_id": "lighthouse-1"}),
}

MAX_LIST = 200


def render_error(err: EaselError, _request: Request) -> JSONResponse:
    """Every failure of a whole request: `{"error": {code, message, parameter}}`, the kinds as
    codes (a refusal made before any route runs keeps its own code)."""
    if err.kind is ErrorKind.UNAUTHENTICATED:
        body = easel_error_body("invalidApiKey", "invalid or missing API key (send "
                                   "Authorization: Bearer <key>)", "Authorization")
        return JSONResponse(body, status_code=401)
    return JSONResponse(translate.error_body(err), status_code=translate.ERRORS.status(err))


def _job(job_id: str) -> JobRef:
    """A job by any id the caller knows it by: easel's, or one its client chose in any
    dialect (a Runware taskUUID, a task_id given here)."""
    return JobRef.any(job_id, "job_id")


def _view(port: Port, job: Job) -> dict[str, Any]:
    return translate.job_view(job, port.images)


@router.get("/easel/info", summary="Server information", response_model=Open,
            openapi_extra=security(BEARER, optional=True),  # a key only if meta routes are
            responses=responses(Open, EaselErrorBody, (401,)))
async def info(port: CorePort) -> JSONResponse:
    """Version; the engine's device, loaded models and accelerator memory; per tier: backend,
    licence, real weights or stand-in (no secrets)."""
    return JSONResponse(await port.server_info())


@router.get("/easel/models", summary="The catalog", response_model=Catalog, openapi_extra=KEY,
            responses=responses(Catalog, EaselErrorBody, (401,)))
async def models(_caller: Authenticated, port: CorePort) -> JSONResponse:
    """Every model id by tier, with its sizes, limits, price, licence and weights, and the LoRA
    adapters allow-listed for each tier's backend."""
    adapters = await asyncio.to_thread(port.adapters)
    return JSONResponse(await asyncio.to_thread(translate.catalog_view, port.catalog, port.facts,
                                                adapters))


@router.post("/easel/jobs", summary="Submit a job", status_code=202, response_model=JobView,
             openapi_extra={**request_body(model_schema(JobInput), EXAMPLES), **KEY},
             responses={**responses(JobView, EaselErrorBody, ERRORS),
                        200: {"model": JobView, "description": "The job this task_id made "
                              "before (idempotency)"}})
async def submit(caller: Authenticated, port: CorePort, body: JsonBody) -> JSONResponse:
    """Queue a job (202); follow it at /easel/jobs/{id}/events or poll /easel/jobs/{id}."""
    job, created = await port.submit(translate.to_submission(body, caller))
    return JSONResponse(_view(port, job), status_code=202 if created else 200)


@router.get("/easel/jobs", summary="List your jobs", response_model=JobList, openapi_extra=KEY,
            responses=responses(JobList, EaselErrorBody, (400, 401, 429)))
async def list_jobs(
    caller: Authenticated, port: CorePort, limit: str = "50", status: str | None = None,
    after: str | None = None,
) -> JSONResponse:
    """The caller's jobs, newest first: `limit` (1..200), `status` (comma-separated), and
    `after` (the id of the last job of the previous page)."""
    count, statuses = _list_query(limit, status)
    cursor = None if after is None else JobRef.cursor_of(after, "after")
    jobs = await port.jobs_of(caller, count, statuses, cursor)
    return JSONResponse({"jobs": [_view(port, job) for job in jobs]})


def _list_query(limit: str, status: str | None) -> tuple[int, list[JobStatus]]:
    if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= MAX_LIST:
        raise invalid("limit", f"limit must be an integer 1..{MAX_LIST}, got {limit[:20]!r}")
    statuses = []
    for name in (status or "").split(","):
        if not name.strip():
            continue
        try:
            statuses.append(JobStatus(name.strip()))
        except ValueError:
            allowed = [s.value for s in JobStatus]
            raise invalid("status", f"status {name[:40]!r} is not one of {', '.join(allowed)}",
                          allowed) from None
    return int(limit), statuses


@router.get("/easel/jobs/{job_id}", summary="Show a job", response_model=JobView,
            openapi_extra=KEY, responses=responses(JobView, EaselErrorBody, (401, 404, 429)))
async def show_job(job_id: str, caller: Authenticated, port: CorePort) -> JSONResponse:
    return JSONResponse(_view(port, await port.find(caller, _job(job_id))))


@router.post("/easel/jobs/{job_id}/cancel", summary="Cancel a job", response_model=JobView,
             openapi_extra=KEY, responses=responses(JobView, EaselErrorBody, ERRORS))
async def cancel_job(job_id: str, caller: Authenticated, port: CorePort) -> JSONResponse:
    """Cancel a queued or running job (whatever dialect sent it); `easel jobs cancel`."""
    return JSONResponse(_view(port, await port.cancel(caller, _job(job_id))))


@router.get("/easel/jobs/{job_id}/deliveries", summary="A job's deliveries",
            response_model=Deliveries, openapi_extra=KEY,
            responses=responses(Deliveries, EaselErrorBody, (401, 404, 429)))
async def deliveries(job_id: str, caller: Authenticated, port: CorePort) -> JSONResponse:
    """Webhook and upload deliveries of a job: pending, delivered or failed (and why)."""
    job = await port.find(caller, _job(job_id))
    rows = await port.deliveries(job)
    return JSONResponse({"job": job_id, "deliveries": [translate.delivery_view(d) for d in rows]})


@router.get("/easel/jobs/{job_id}/events", response_model=None, summary="Follow a job (events)",
            response_class=StreamingResponse, openapi_extra=KEY,
            responses={**responses(Open, EaselErrorBody, (401, 404, 429)),
                       200: {"description": "Server-sent events: `progress`, then one `end`",
                             "content": {"text/event-stream": {"schema": EVENT}}}})
async def events(job_id: str, caller: Authenticated, port: CorePort) -> StreamingResponse:
    """Server-sent events: `progress` at every change (steps, stored images), then one `end`
    with the terminal job; the stream closes after it. Each event's data is the job view."""
    job = await port.find(caller, _job(job_id))
    return StreamingResponse(
        _event_stream(port, job), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _event_stream(port: Port, job: Job) -> AsyncIterator[str]:
    last = ""
    async with contextlib.aclosing(with_keep_alives(port.watch(job))) as ups:
        async for current in ups:
            if current is None:
                yield KEEP_ALIVE
                continue
            data = json.dumps(_view(port, current))
            if data == last:  # a change the view does not show (a wake-up that moved nothing)
                continue
            last = data
            name = "end" if current.status.terminal else "progress"
            yield f"event: {name}\nid: {current.progress_step}\ndata: {data}\n\n"


def dialect() -> Dialect:
    """This dialect as the app mounts it (api/app.py lists every dialect). Its clients may
    choose job ids (task_id)."""
    return Dialect(translate.DIALECT, router, translate.ERRORS, ("/easel",), render_error,
                   chooses_ids=True)
