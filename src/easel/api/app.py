"""The FastAPI application: lifespan, health, metrics, image URLs, and the dialects it is given
(easel's own job routes are the `easel` dialect's). Built by easel.runtime.build, which lists the
dialects explicitly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from easel.api import playground, reference
from easel.api.dialects.common import Dialect
from easel.api.guard import CrossSiteGuard, refusal_body
from easel.domain.errors import ErrorKind, Throttled
from easel.logs import masked_query
from easel.runtime.process import Services

log = logging.getLogger(__name__)
access_log = logging.getLogger("easel.access")


def create_app(services: Services, dialects: Sequence[Dialect]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    # FastAPI's own /docs and /redoc load their assets from a CDN: api/reference.py serves them
    # from the package, with the security schemes and tags in /openapi.json.
    app = FastAPI(title="easel", version="0.1.0", lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    reference.install(app)
    app.state.services = services
    _add_request_metrics(app, services)
    app.add_middleware(CrossSiteGuard, services=services, dialects=dialects)  # outermost
    _add_core_routes(app, services)
    app.include_router(playground.router())
    for dialect in dialects:
        app.include_router(dialect.router)

    _answer_unknown_routes(app, dialects)

    @app.exception_handler(Throttled)
    async def _throttled(request: Request, exc: Exception) -> JSONResponse:
        # A refusal for now that no dialect rendered (the key store down while checking a
        # key): the dialect's own error shape, 503 and when to come back, never a 500.
        assert isinstance(exc, Throttled)
        status = 429 if exc.kind is ErrorKind.RATE_LIMITED else 503
        body = refusal_body(dialects, request.scope, status, exc.kind.value, exc.message, None)
        return JSONResponse(body, status_code=status,
                            headers={"Retry-After": str(exc.retry_after)})

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
        seconds = time.perf_counter() - started
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")  # templates, not raw paths: bounded labels
        services.metrics.request_seconds.labels(
            request.method, path, str(response.status_code)
        ).observe(seconds)
        _access_log(request, response.status_code, seconds)
        return response


def _access_log(request: Request, status: int, seconds: float) -> None:
    """One line a request, easel's own (not uvicorn's): its query string is masked."""
    query = masked_query(request.url.query)
    target = request.url.path + (f"?{query}" if query else "")
    client = request.client.host if request.client else "-"
    access_log.info('%s "%s %s" %d %.1f ms', client, request.method, target, status,
                    seconds * 1000, extra={"client": client, "method": request.method,
                                           "path": request.url.path, "status": status,
                                           "ms": round(seconds * 1000, 1)})


def _add_core_routes(app: FastAPI, services: Services) -> None:
    @app.get("/livez", **reference.CORE_ROUTES["livez"])
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", **reference.CORE_ROUTES["readyz"])
    async def readyz() -> JSONResponse:
        reason = await asyncio.to_thread(services.not_ready_reason)
        if not reason:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.get("/metrics", **reference.CORE_ROUTES["metrics"])
    async def metrics() -> Response:
        body = await asyncio.to_thread(services.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    # HEAD answers as GET does, without the body (uvicorn leaves it out): clients check an
    # image's size and type, or that it has not expired, without downloading it.
    @app.get("/images/{name}", **reference.CORE_ROUTES["image"])
    @app.head("/images/{name}", **reference.CORE_ROUTES["image_head"])
    async def image(name: str, request: Request) -> Response:
        image_id, _, ext = name.rpartition(".")
        # The image store down is Throttled, a 503 with Retry-After (create_app's handler).
        found = await asyncio.to_thread(services.artifacts.open, image_id, ext.lower())
        if found is None:
            return JSONResponse({"error": "image not found or expired"}, status_code=404)
        headers = {"Cache-Control": "private, max-age=60", "Content-Length": str(found.size)}
        if request.method == "HEAD":
            close = getattr(found.chunks, "close", None)
            if close is not None:
                close()
            return Response(None, media_type=found.mime, headers=headers)
        # Streamed from disk or the object store a chunk at a time, at the client's pace.
        return StreamingResponse(iterate_in_threadpool(found.chunks), media_type=found.mime,
                                 headers=headers)
