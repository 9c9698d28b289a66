"""easel's own routes under /easel: submit a job of any model id, list, show and cancel the
caller's jobs, stream a job's progress (server-sent events), and the catalog as forms need it
(docs/easel-api.md). The playground page and `easel jobs` are their clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from easel.api.auth import authenticate
from easel.api.deps import Services, get_services
from easel.api.dialects.common import Dialect, bearer_token, read_json_object, retry_headers
from easel.api.dialects.easel import translate as native
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
from easel.domain.submission import Caller
from easel.services.weights.facts import server_info

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


KEY = security(BEARER, GOOGLE_KEY_HEADER)  # _caller takes either
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
HEARTBEAT_SECONDS = 15.0  # a comment line keeps proxies from closing an idle stream


def _error(err: EaselError) -> JSONResponse:
    return JSONResponse(native.error_body(err), status_code=native.ERRORS.status(err),
                        headers=retry_headers(err))


def _caller(services: Services, request: Request) -> Caller | JSONResponse:
    key = request.headers.get("x-goog-api-key") or bearer_token(request)
    caller = authenticate(services, request, key)
    if caller is not None:
        return caller
    return JSONResponse(native.refusal(401, "invalidApiKey", "invalid or missing API key (send "
                                       "Authorization: Bearer <key>)", "Authorization"),
                        status_code=401)


async def _owned(services: Services, request: Request, job_id: str) -> Job | JSONResponse:
    """The caller's job by any id it knows it by, or the reply that refuses it."""
    caller = _caller(services, request)
    if isinstance(caller, JSONResponse):
        return caller
    try:
        services.jobs.check_poll(caller)  # reads spend the caller's rate budget too
    except EaselError as err:
        return _error(err)
    job = await services.jobs.find(caller, job_id)
    if job is None:
        return _error(EaselError(ErrorKind.NOT_FOUND, f"no job {job_id[:100]}", "job_id"))
    return job


def _view(services: Services, job: Job) -> dict[str, Any]:
    return native.job_view(job, services.artifacts)


@router.get("/easel/info", summary="Server information", response_model=Open,
            openapi_extra=security(BEARER, optional=True),  # a key only if meta routes are
            responses=responses(Open, EaselErrorBody, (401,)))
async def info(services: Services = Depends(get_services)) -> JSONResponse:
    """Version; the engine's device, loaded models and accelerator memory; per tier: backend,
    licence, real weights or stand-in (no secrets)."""
    return JSONResponse(await asyncio.to_thread(server_info, services.catalog,
                                                services.jobs.resolver,
                                                services.engine_status()))


@router.get("/easel/models", summary="The catalog", response_model=Catalog, openapi_extra=KEY,
            responses=responses(Catalog, EaselErrorBody, (401,)))
async def models(request: Request, services: Services = Depends(get_services)) -> JSONResponse:
    """Every model id by tier, with its sizes, limits, price, licence and weights."""
    caller = _caller(services, request)
    if isinstance(caller, JSONResponse):
        return caller
    return JSONResponse(await asyncio.to_thread(native.catalog_view, services.catalog,
                                                services.jobs.resolver))


@router.post("/easel/jobs", summary="Submit a job", status_code=202, response_model=JobView,
             openapi_extra={**request_body(model_schema(JobInput), EXAMPLES), **KEY},
             responses={**responses(JobView, EaselErrorBody, ERRORS),
                        200: {"model": JobView, "description": "The job this task_id made "
                              "before (idempotency)"}})
async def submit(request: Request, services: Services = Depends(get_services)) -> JSONResponse:
    """Queue a job (202); follow it at /easel/jobs/{id}/events or poll /easel/jobs/{id}."""
    caller = _caller(services, request)
    if isinstance(caller, JSONResponse):
        return caller
    try:
        body = await read_json_object(request, services.settings.max_body_bytes,
                                      services.settings.body_timeout)
        job, created = await services.jobs.submit(native.to_submission(body, caller))
    except EaselError as err:
        return _error(err)
    return JSONResponse(_view(services, job), status_code=202 if created else 200)


@router.get("/easel/jobs", summary="List your jobs", response_model=JobList, openapi_extra=KEY,
            responses=responses(JobList, EaselErrorBody, (400, 401, 429)))
async def list_jobs(
    request: Request, limit: str = "50", status: str | None = None,
    after: str | None = None, services: Services = Depends(get_services),
) -> JSONResponse:
    """The caller's jobs, newest first: `limit` (1..200), `status` (comma-separated), and
    `after` (the id of the last job of the previous page)."""
    caller = _caller(services, request)
    if isinstance(caller, JSONResponse):
        return caller
    try:
        services.jobs.check_poll(caller)
        count, statuses = _list_query(limit, status)
        after_id = None if after is None else await _cursor(services, caller, after)
    except EaselError as err:
        return _error(err)
    jobs = await services.jobs.list_for(caller, count, statuses, after_id)
    return JSONResponse({"jobs": [_view(services, job) for job in jobs]})


async def _cursor(services: Services, caller: Caller, after: str) -> str:
    """The stored id of the job `after` names, by any id the caller knows it by."""
    job = await services.jobs.find(caller, after)
    if job is None:
        raise invalid("after", f"after names no job of yours: {after[:100]!r}")
    return job.id


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
async def show_job(
    job_id: str, request: Request, services: Services = Depends(get_services)
) -> JSONResponse:
    job = await _owned(services, request, job_id)
    return job if isinstance(job, JSONResponse) else JSONResponse(_view(services, job))


@router.post("/easel/jobs/{job_id}/cancel", summary="Cancel a job", response_model=JobView,
             openapi_extra=KEY, responses=responses(JobView, EaselErrorBody, ERRORS))
async def cancel_job(
    job_id: str, request: Request, services: Services = Depends(get_services)
) -> JSONResponse:
    """Cancel a queued or running job (whatever dialect sent it); `easel jobs cancel`."""
    job = await _owned(services, request, job_id)
    if isinstance(job, JSONResponse):
        return job
    return JSONResponse(_view(services, await services.jobs.cancel(job.id)))


@router.get("/easel/jobs/{job_id}/deliveries", summary="A job's deliveries",
            response_model=Deliveries, openapi_extra=KEY,
            responses=responses(Deliveries, EaselErrorBody, (401, 404, 429)))
async def deliveries(
    job_id: str, request: Request, services: Services = Depends(get_services)
) -> JSONResponse:
    """Webhook and upload deliveries of a job: pending, delivered or failed (and why)."""
    job = await _owned(services, request, job_id)
    if isinstance(job, JSONResponse):
        return job
    rows = await services.jobs.deliveries(job.id)
    return JSONResponse({"job": job_id, "deliveries": [d.public() for d in rows]})


@router.get("/easel/jobs/{job_id}/events", response_model=None, summary="Follow a job (events)",
            response_class=StreamingResponse, openapi_extra=KEY,
            responses={**responses(Open, EaselErrorBody, (401, 404, 429)),
                       200: {"description": "Server-sent events: `progress`, then one `end`",
                             "content": {"text/event-stream": {"schema": EVENT}}}})
async def events(
    job_id: str, request: Request, services: Services = Depends(get_services)
) -> StreamingResponse | JSONResponse:
    """Server-sent events: `progress` at every change (steps, stored images), then one `end`
    with the terminal job; the stream closes after it. Each event's data is the job view."""
    job = await _owned(services, request, job_id)
    if isinstance(job, JSONResponse):
        return job
    return StreamingResponse(
        _event_stream(services, job.id), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _event_stream(services: Services, job_id: str) -> AsyncIterator[str]:
    updates = services.jobs.watch(job_id)
    pending: asyncio.Task[Job] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(updates.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=HEARTBEAT_SECONDS)
            if not done:
                yield ": keep-alive\n\n"
                continue
            pending = None
            try:
                job = done.pop().result()
            except StopAsyncIteration:
                return
            name = "end" if job.status.terminal else "progress"
            yield f"event: {name}\nid: {job.progress_step}\ndata: " \
                  f"{json.dumps(_view(services, job))}\n\n"
    finally:  # the client went away, or the job ended: let go of the job's watcher now
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        await updates.aclose()


def dialect() -> Dialect:
    """This dialect as the app mounts it (api/app.py lists every dialect)."""
    return Dialect(native.DIALECT, router, native.ERRORS, ("/easel",), native.refusal)
