"""The FastAPI application: health, metrics, image URLs, the API reference, the playground, and
the dialects it is given (easel's own job routes are the `easel` dialect's), over the port.

Built by easel.runtime.build, which lists the dialects explicitly and hands over the port, the
operations the app's own routes need, the guard's settings and the lifespan (the runtime that
starts and stops the services). Every failure of a whole request is rendered in one place: the
EaselError handler asks the dialect that owns the request to render it."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from easel import __version__
from easel.api import playground, reference
from easel.api.dialects.common import (
    IGNORED_HEADER,
    PROMPT_HEADER,
    Dialect,
    easel_error_body,
)
from easel.api.guard import CrossSiteGuard, GuardSettings, render_refusal
from easel.api.limits import HTTPRefusal
from easel.api.replies import PacedReplies, RepliesInFlight
from easel.domain.errors import EaselError
from easel.logs import masked_query
from easel.services.port import Operations, Port

log = logging.getLogger(__name__)
access_log = logging.getLogger("easel.access")

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

# What a page may read of a reply besides the CORS-safelisted headers: the job's id, what
# was ignored, the prompt's fate, when to come back and whether to retry.
EXPOSED_HEADERS = ["x-easel-job-id", "x-request-id", IGNORED_HEADER, PROMPT_HEADER,
                   "retry-after", "x-should-retry"]
CORS_MAX_AGE = 600  # seconds a browser may keep a preflight's answer


def create_app(port: Port, ops: Operations, dialects: Sequence[Dialect], guard: GuardSettings,
               replies: RepliesInFlight, lifespan: Lifespan | None = None) -> FastAPI:
    # FastAPI's own /docs and /redoc load their assets from a CDN: api/reference.py serves them
    # from the package, with the security schemes and tags in /openapi.json.
    app = FastAPI(title="easel", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    app.state.port = port  # what the dependencies of every route read (api/caller.py)
    app.state.replies = replies  # what Runware's WebSocket reserves its frames in
    reference.install(app)
    _add_request_metrics(app, ops)
    if guard.cors_origins:  # inside the guard: only origins it let through get CORS headers
        app.add_middleware(CORSMiddleware, allow_origins=sorted(guard.cors_origins),
                           allow_methods=["GET", "HEAD", "POST", "DELETE"], allow_headers=["*"],
                           expose_headers=EXPOSED_HEADERS, max_age=CORS_MAX_AGE)
    app.add_middleware(CrossSiteGuard, port=port, dialects=dialects, settings=guard)
    # Outermost: a reply's reservation lasts until the server has taken its last byte.
    app.add_middleware(PacedReplies, replies=replies)
    _add_core_routes(app, ops)
    app.include_router(playground.router())
    for dialect in dialects:
        app.include_router(dialect.router)
    _add_error_handlers(app, dialects)
    return app


def _add_error_handlers(app: FastAPI, dialects: Sequence[Dialect]) -> None:
    @app.exception_handler(EaselError)
    async def _refused(request: Request, exc: Exception) -> Response:
        # A route's refusal, a missing key, a store that is down: the owning dialect renders it
        # in its provider's shape, with its status and Retry-After.
        assert isinstance(exc, EaselError)
        return render_refusal(dialects, request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # A route or method easel does not serve, answered in the error shape of the dialect
        # whose paths it is under, saying plainly that easel does not offer it (a client library
        # then raises its own NotFound error with that message, not a parse failure).
        if exc.status_code not in (404, 405):
            return await http_exception_handler(request, exc)
        method, path = request.method, request.url.path
        if exc.status_code == 404:
            refusal = HTTPRefusal(404, "notFound", f"easel does not offer {method} {path[:200]}",
                                  None)
        else:
            refusal = HTTPRefusal(405, "methodNotAllowed", f"easel does not offer {method} on "
                                  f"{path[:200]}; see /docs for what it serves", None)
        response = render_refusal(dialects, request, refusal)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse({"error": "internal server error"}, status_code=500)


def _add_request_metrics(app: FastAPI, ops: Operations) -> None:
    @app.middleware("http")
    async def _timed(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        seconds = time.perf_counter() - started
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")  # templates, not raw paths: bounded labels
        ops.observe_request(request.method, path, response.status_code, seconds)
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


YEAR_SECONDS = 365 * 24 * 3600


def cache_control(lives_for: float | None) -> str:
    """An image's bytes never change under its id, so a client may keep them exactly as long
    as the image lives (a year when it is kept until deleted), and never past its expiry."""
    if lives_for is None:
        return f"private, max-age={YEAR_SECONDS}, immutable"
    # A wall-clock timestamp (~1.7e9) carries ~2e-7 s of float error: 120 s can read 119.9999998.
    return f"private, max-age={max(0, int(lives_for + 1e-3))}, immutable"


def _add_core_routes(app: FastAPI, ops: Operations) -> None:
    @app.get("/livez", **reference.CORE_ROUTES["livez"])
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", **reference.CORE_ROUTES["readyz"])
    async def readyz() -> JSONResponse:
        reason = await ops.not_ready_reason()
        if not reason:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.get("/metrics", **reference.CORE_ROUTES["metrics"])
    async def metrics() -> Response:
        return Response(await ops.metrics_text(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    # HEAD answers as GET does, without the body (uvicorn leaves it out): clients check an
    # image's size and type, or that it has not expired, without downloading it.
    @app.get("/images/{name}", **reference.CORE_ROUTES["image"])
    @app.head("/images/{name}", **reference.CORE_ROUTES["image_head"])
    async def image(name: str, request: Request) -> Response:
        image_id, _, ext = name.rpartition(".")
        # The image store down is Throttled: a 503 with Retry-After (the EaselError handler).
        found = await ops.open_image(image_id, ext.lower())
        if found is None:
            return JSONResponse(easel_error_body("notFound", "image not found or expired",
                                                 "name"), status_code=404)
        headers = {"Cache-Control": cache_control(found.lives_for),
                   "Content-Length": str(found.size)}
        if request.method == "HEAD":
            close = getattr(found.chunks, "close", None)
            if close is not None:
                close()
            return Response(None, media_type=found.mime, headers=headers)
        # Streamed from disk or the object store a chunk at a time, at the client's pace.
        return StreamingResponse(iterate_in_threadpool(found.chunks), media_type=found.mime,
                                 headers=headers)

