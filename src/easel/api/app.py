"""The FastAPI application: lifespan, health, metrics, image URLs, the core's job routes, and
the dialects it is given. Built by easel.server, which lists the dialects explicitly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from easel.api.auth import authenticate, bearer_token
from easel.api.dialects.common import Dialect
from easel.api.guard import CrossSiteGuard, refusal_body
from easel.domain.job import Job
from easel.services.container import Services
from easel.services.info import server_info

log = logging.getLogger(__name__)


def create_app(services: Services, dialects: Sequence[Dialect]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(title="easel", version="0.1.0", lifespan=lifespan)
    app.state.services = services
    _add_request_metrics(app, services)
    app.add_middleware(CrossSiteGuard, services=services, dialects=dialects)  # outermost
    _add_core_routes(app, services)
    for dialect in dialects:
        app.include_router(dialect.router)

    _answer_unknown_routes(app, dialects)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse({"error": "internal server error"}, status_code=500)

    return app


def _answer_unknown_routes(app: FastAPI, dialects: Sequence[Dialect]) -> None:
    """A route or method easel does not serve is answered in the error shape of the dialect
    whose paths it is under, saying plainly that easel does not offer it (a client library
    then raises its own NotFound error with that message, not a parse failure)."""

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code not in (404, 405):
            return await http_exception_handler(request, exc)
        method, path = request.method, request.url.path
        if exc.status_code == 404:
            code, message = "notFound", f"easel does not offer {method} {path[:200]}"
        else:
            code, message = "methodNotAllowed", (
                f"easel does not offer {method} on {path[:200]}; see /docs for what it serves")
        body = refusal_body(dialects, request.scope, exc.status_code, code, message, None)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def _add_request_metrics(app: FastAPI, services: Services) -> None:
    @app.middleware("http")
    async def _timed(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")  # templates, not raw paths: bounded labels
        services.metrics.request_seconds.labels(
            request.method, path, str(response.status_code)
        ).observe(time.perf_counter() - started)
        return response


def job_view(job: Job) -> dict[str, Any]:
    """A job as easel's own routes (and `easel jobs`) show it, whatever dialect sent it."""
    return {
        "id": job.client_id, "job": job.id, "dialect": job.dialect, "status": job.status.value,
        "model": job.request.model, "prompt": job.request.prompt,
        "size": f"{job.request.width}x{job.request.height}", "images": len(job.images),
        "seeds": [image.seed for image in job.images],
        "expires_at": [None if image.expires_at is None else image.expires_at.isoformat()
                       for image in job.images],
        "progress": {"step": job.progress_step, "total": job.progress_total},
        "error": None if job.error is None else {"kind": job.error.value,
                                                 "message": job.error_message},
        "created_at": job.created_at.isoformat(),
        "finished_at": None if job.finished_at is None else job.finished_at.isoformat(),
        "cancel_requested": job.cancel_requested, "backend": job.backend,
        "stand_in_reason": job.stand_in_reason,
    }


def _add_core_routes(app: FastAPI, services: Services) -> None:
    @app.get("/livez", include_in_schema=False)
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        reason = await asyncio.to_thread(services.not_ready_reason)
        if not reason:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.get("/easel/info", include_in_schema=False)
    async def info() -> JSONResponse:
        """Version, and per tier: backend, licence, real weights or stand-in (no secrets)."""
        return JSONResponse(await asyncio.to_thread(server_info, services.catalog,
                                                    services.jobs.resolver))

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body = await asyncio.to_thread(services.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def owned(request: Request, job_id: str) -> Job | JSONResponse:
        """The caller's job by any id it knows it by, or the reply that refuses it."""
        key = request.headers.get("x-goog-api-key") or bearer_token(
            request.headers.get("authorization"))
        caller = authenticate(services, request, key)
        if caller is None:
            return JSONResponse({"error": "invalid or missing API key"}, status_code=401)
        job = await services.jobs.find(caller, job_id)
        if job is None:
            return JSONResponse({"error": f"no job {job_id}"}, status_code=404)
        return job

    @app.get("/easel/jobs/{job_id}", include_in_schema=False)
    async def show_job(job_id: str, request: Request) -> JSONResponse:
        job = await owned(request, job_id)
        return job if isinstance(job, JSONResponse) else JSONResponse(job_view(job))

    @app.post("/easel/jobs/{job_id}/cancel", include_in_schema=False)
    async def cancel_job(job_id: str, request: Request) -> JSONResponse:
        """Cancel a queued or running job (whatever dialect sent it); `easel jobs cancel`."""
        job = await owned(request, job_id)
        if isinstance(job, JSONResponse):
            return job
        return JSONResponse(job_view(await services.jobs.cancel(job.id)))

    @app.get("/easel/jobs/{job_id}/deliveries", include_in_schema=False)
    async def deliveries(job_id: str, request: Request) -> JSONResponse:
        """Webhook and upload deliveries of a job: pending, delivered or failed (and why)."""
        job = await owned(request, job_id)
        if isinstance(job, JSONResponse):
            return job
        rows = await services.jobs.deliveries(job.id)
        return JSONResponse({"job": job_id, "deliveries": [d.public() for d in rows]})

    # HEAD answers as GET does, without the body (uvicorn leaves it out): clients check an
    # image's size and type, or that it has not expired, without downloading it.
    @app.api_route("/images/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    async def image(name: str) -> Response:
        image_id, _, ext = name.rpartition(".")
        found = await asyncio.to_thread(services.artifacts.read, image_id, ext.lower())
        if found is None:
            return JSONResponse({"error": "image not found or expired"}, status_code=404)
        data, mime = found
        return Response(data, media_type=mime, headers={"Cache-Control": "private, max-age=60"})
