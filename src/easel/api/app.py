"""The FastAPI application: lifespan, health, metrics, image URLs, and the dialect routers."""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from easel.api.auth import bearer_token, key_is_valid
from easel.api.limits import RequestContext
from easel.services.container import Services, build_services
from easel.settings import Settings

log = logging.getLogger(__name__)

DIALECTS = ("runware", "wavespeed", "openai", "google")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    services = build_services(settings)

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
    app.add_middleware(RequestContext)  # outermost: every handler sees the request's context
    _add_core_routes(app, services)
    _include_dialects(app)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse({"error": "internal server error"}, status_code=500)

    return app


def _include_dialects(app: FastAPI) -> None:
    """Each dialect is optional: a package with a routes.router is mounted, others are skipped."""
    for name in DIALECTS:
        module_name = f"easel.api.dialects.{name}.routes"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # the dialect does not exist (yet)
            raise
        app.include_router(module.router)


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


def _add_core_routes(app: FastAPI, services: Services) -> None:
    @app.get("/livez", include_in_schema=False)
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        if services.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse(
            {"status": "not ready", "reason": services.not_ready_reason}, status_code=503
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body = await asyncio.to_thread(services.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/easel/jobs/{job_id}/deliveries", include_in_schema=False)
    async def deliveries(job_id: str, request: Request) -> JSONResponse:
        """Webhook and upload deliveries of a job: pending, delivered or failed (and why)."""
        key = request.headers.get("x-goog-api-key") or bearer_token(
            request.headers.get("authorization"))
        if not key_is_valid(services, key):
            return JSONResponse({"error": "invalid or missing API key"}, status_code=401)
        rows = await services.delivery.for_job(job_id)
        return JSONResponse({"job": job_id, "deliveries": [d.public() for d in rows]})

    @app.get("/images/{name}", include_in_schema=False)
    async def image(name: str) -> Response:
        image_id, _, ext = name.rpartition(".")
        found = await asyncio.to_thread(services.artifacts.read, image_id, ext.lower())
        if found is None:
            return JSONResponse({"error": "image not found or expired"}, status_code=404)
        data, mime = found
        return Response(data, media_type=mime, headers={"Cache-Control": "private, max-age=60"})
