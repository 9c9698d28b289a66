"""The API reference: Swagger UI at /docs and ReDoc at /redoc, from the JavaScript and CSS the
fastapi-offline package ships (no CDN, so both render on a machine without internet), and
/openapi.json with a description of what OpenAPI cannot say (the Runware WebSocket), a tag per
dialect and the security schemes the dialects really accept (openapi.SECURITY_SCHEMES).

The guard (api/guard.py) treats these pages, their assets and /openapi.json alike: with
`protect_meta_routes` they all need a key."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel

from easel.api.openapi import BEARER, SECURITY_SCHEMES, model_schema, security

ASSETS_PATH = "/docs/assets/"
# fastapi-offline's static files: Swagger UI 5, ReDoc 2 (standalone) and FastAPI's favicon.
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
          "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}
SWAGGER_OPTIONS = {
    "validatorUrl": None,  # Swagger's default badge loads an image from validator.swagger.io
    "persistAuthorization": True,  # the key typed in Authorize survives a reload
    "displayRequestDuration": True,
}
ASSET_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

DESCRIPTION = """\
easel is a self-hosted text-to-image service that speaks the wire formats of the hosted
Imagen 4 APIs: **Runware** (`/v1`), **WaveSpeed** (`/api/v3`), **Google** Gemini and Vertex AI
(`:predict`), **OpenAI** images with AIML's fields (`/v1/images/generations`), and its own
**easel** job API (`/easel`). An official client of each works with only its base URL changed.

**Authentication.** When the server has keys (`EASEL_API_KEYS`), every dialect route needs one:
`Authorization: Bearer <key>` everywhere; Google's clients may send `x-goog-api-key: <key>` or
`?key=<key>` instead, and Runware's an `authentication` task in the body. Press **Authorize**
and enter the key (for Google's routes, in any of its three forms) to send it from this page.
A server without keys (loopback only) accepts requests without one. `/metrics`, `/easel/info`,
`/docs`, `/redoc` and `/openapi.json` need a key only with `EASEL_PROTECT_META_ROUTES=1`.

**Examples.** Every request body below has an example that works as it is against a server
with the default catalog: the model ids and sizes are the catalog's. Image URLs in replies are
served by `/images/{name}` for the job's TTL.

Not described as operations: the Runware **WebSocket** on `/v1` (see the `runware` tag), the
playground page at `/`, and these reference pages, which need no internet.
"""

TAGS: list[dict[str, Any]] = [
    {"name": "runware", "description": """\
Runware's task API. `POST /v1` (or `/v1/`) takes a JSON array of tasks: `imageInference`,
`getResponse`, `getTaskDetails`, `authentication` and `ping`; each task is answered on its own
(`data` for the good ones, `errors` for the others). The key is a bearer token or an
`{"taskType": "authentication", "apiKey": "<key>"}` task in the array. `taskUUID` is the
idempotency key: the same one with the same fields returns the same images.

**WebSocket** (`ws://<host>/v1`, `wss://` behind TLS): the same tasks as JSON text frames.
Send `[{"taskType": "authentication", "apiKey": "<key>"}]` first (within
`EASEL_WS_AUTH_TIMEOUT`, 10 s, when the server has keys); the reply carries a
`connectionSessionUUID`, which a reconnecting client sends in its authentication task to resume
the session and receive the results it missed (kept 120 s). Many tasks may be in flight on one
connection; results arrive as their tasks finish, one image per frame, matched by `taskUUID`;
no frame is larger than `EASEL_WS_MAX_FRAME_BYTES`. An error is a frame and never closes the
session; a key revoked while the socket is open closes it (code 4401). A handshake from
another site's page is refused (HTTP 403)."""},
    {"name": "wavespeed", "description": """\
WaveSpeed v3: `POST /api/v3/{model_id}` submits a prediction (`enable_sync_mode` waits for the
images), `GET /api/v3/predictions/{id}/result` polls it. Bearer key. WaveSpeed endpoints easel
does not offer (media uploads, pricing, balance, history) answer 404 saying so."""},
    {"name": "google", "description": """\
Google Imagen `:predict`, on every path the google-genai releases use: the Gemini API
(`/v1beta`, `/v1alpha`; also `/v1/models` for requests from Google clients), Vertex AI
(`/{v1,v1beta1}/projects/{project}/locations/{location}/publishers/google/models/...`) and its
express mode (`/{v1,v1beta1}/publishers/google/models/...`). The key rides in
`x-goog-api-key`, `?key=` or, on Vertex paths, as a bearer token (an OAuth token's place)."""},
    {"name": "openai", "description": """\
OpenAI's images API, with AIML's Imagen fields (`num_images`, `aspect_ratio`, `seed`,
`negative_prompt`, ...): `POST /v1/images/generations` waits for the images. Bearer key.
`model` is a catalog id or a generic one (`imagen-4`) whose tier `quality` picks."""},
    {"name": "easel", "description": """\
easel's own job API (docs/easel-api.md): any catalog model, the caller's jobs listed, shown and
cancelled whatever dialect sent them, progress as server-sent events, and the catalog. The
playground page and `easel jobs` are its clients."""},
    {"name": "images", "description": """\
Image URLs handed out in replies: unguessable ids, valid for the job's TTL, no key needed.
`HEAD` answers as `GET` does (type, length, 404 once expired) without the body."""},
    {"name": "operations", "description": "Health checks and Prometheus metrics."},
]


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    reason: str | None = None


class RefusalDetail(BaseModel):
    code: str
    message: str
    parameter: str | None = None


class Refusal(BaseModel):
    """easel's error outside every dialect (the guard's refusals, an unknown image): the shape
    of easel's own API."""

    error: RefusalDetail


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_IMAGE_HEADERS = {
    "Content-Type": {"schema": {"type": "string"}, "description": "image/png, image/jpeg or "
                     "image/webp"},
    "Content-Length": {"schema": {"type": "integer"}, "description": "the image's size"},
}
# Explicit content: the guard's refusal is JSON even where the route answers text.
_KEY_IF_PROTECTED = {401: {"description": "With EASEL_PROTECT_META_ROUTES=1: a key is required",
                           "content": {"application/json": {"schema": model_schema(Refusal)}}}}

# The documentation of the routes api/app.py serves itself (keyword arguments of app.get).
CORE_ROUTES: dict[str, dict[str, Any]] = {
    "livez": {
        "tags": ["operations"], "summary": "Liveness",
        "description": "200 while the process serves requests (no storage check).",
        "response_model": Liveness,
    },
    "readyz": {
        "tags": ["operations"], "summary": "Readiness",
        "description": "200 when the job store and the image store can be written (checked at "
                       "most once a second); otherwise 503 with the reason and Retry-After.",
        "response_model": Readiness,
        "responses": {503: {"model": Readiness, "description": "Not ready (see Retry-After)"}},
    },
    "metrics": {
        "tags": ["operations"], "summary": "Prometheus metrics",
        "description": "Requests, jobs, queue, deliveries, the content check and the engine, "
                       "in Prometheus' text format.",
        "response_class": PlainTextResponse,
        "responses": {200: {"description": "Prometheus text exposition format (0.0.4)"},
                      **_KEY_IF_PROTECTED},
        "openapi_extra": security(BEARER, optional=True),
    },
    "image": {
        "tags": ["images"], "summary": "Download an image",
        "description": "`name` is the last part of an image URL in a reply: the image id and "
                       "its extension. Valid for the job's TTL; no key needed (the id is the "
                       "capability).",
        "response_class": Response,
        "responses": {
            200: {"description": "The image",
                  "content": {"image/png": _BINARY, "image/jpeg": _BINARY,
                              "image/webp": _BINARY},
                  "headers": _IMAGE_HEADERS},
            404: {"model": Refusal, "description": "No such image, or it expired"},
        },
    },
    "image_head": {
        "tags": ["images"], "summary": "An image's type and size, without the body",
        "description": "Answers as GET does, headers only: whether the image is still there, "
                       "its type and its length.",
        "response_class": Response,
        "responses": {200: {"description": "The image's headers", "headers": _IMAGE_HEADERS},
                      404: {"description": "No such image, or it expired"}},
    },
}


def install(app: FastAPI) -> None:
    """Serve the reference pages and build /openapi.json with easel's description, tags and
    security schemes. `app` must be made with `docs_url=None, redoc_url=None` (FastAPI's own
    pages load their assets from a CDN)."""
    app.include_router(router(app.openapi_url or "/openapi.json", app.title))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = schema(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point


def schema(app: FastAPI) -> dict[str, Any]:
    built = get_openapi(title=app.title, version=app.version, description=DESCRIPTION,
                        routes=app.routes, tags=TAGS)
    built.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    return built


def router(openapi_url: str, title: str) -> APIRouter:
    pages = APIRouter(include_in_schema=False)
    static = _static_dir()

    @pages.get("/docs")
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{title} API reference (Swagger UI)",
            swagger_js_url=f"{root}{ASSETS_PATH}swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}favicon.png",
            oauth2_redirect_url=None, swagger_ui_parameters=SWAGGER_OPTIONS)
        return _with_policy(page)

    @pages.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=root + openapi_url, title=f"{title} API reference (ReDoc)",
            redoc_js_url=f"{root}{ASSETS_PATH}redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}favicon.png", with_google_fonts=False)
        return _with_policy(page)

    @pages.get(ASSETS_PATH + "{name}")
    async def asset(name: str, request: Request) -> Response:
        if name not in ASSETS:
            return Response(status_code=404)
        path = static / name
        found = FileResponse(path, media_type=ASSETS[name], stat_result=path.stat(),
                             headers=ASSET_HEADERS)
        # A reload revalidates by the ETag instead of fetching 2.8 MB again.
        if request.headers.get("if-none-match") == found.headers["etag"]:
            return Response(status_code=304, headers={"ETag": found.headers["etag"],
                                                      **ASSET_HEADERS})
        return found

    return pages


def _static_dir() -> Path:
    """fastapi-offline's static folder (an installed package is a directory on disk)."""
    return Path(str(resources.files("fastapi_offline") / "static"))


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    """The page with a Content-Security-Policy that allows what it loads and nothing else:
    scripts from this server and the page's own inline start-up script (by its hash). Styles
    may be inline: ReDoc writes its styles into <style> elements as it renders."""
    html = bytes(page.body).decode("utf-8")
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in INLINE_SCRIPT.findall(html))
    policy = (f"default-src 'self'; script-src 'self' {hashes}; "
              "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
              "font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
              "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
    return HTMLResponse(html, headers={"Content-Security-Policy": policy,
                                       "Cache-Control": "no-cache",
                                       "X-Content-Type-Options": "nosniff"})
