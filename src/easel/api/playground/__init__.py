"""The playground page at `/`: plain HTML, CSS and JS shipped in the package (no build step,
no CDN, so it works on an offline machine). It is a client of easel's own API (/easel/...) like
any other: the page holds no secret and needs no key to load; its calls send the key the user
typed, kept in the browser's storage."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

FILES = {"playground.js": "text/javascript", "playground.css": "text/css"}
# Everything the page loads comes from this server; images are same-origin URLs or blobs.
POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
          "script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": POLICY, "Cache-Control": "no-cache",
           "X-Content-Type-Options": "nosniff"}


def router() -> APIRouter:
    pages = APIRouter(include_in_schema=False)
    root = resources.files("easel.api.playground")

    @pages.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse(root.joinpath("index.html").read_text("utf-8"), headers=HEADERS)

    @pages.get("/playground/{name}")
    async def asset(name: str) -> Response:
        if name not in FILES:
            return Response(status_code=404)
        return Response(root.joinpath(name).read_bytes(), media_type=FILES[name],
                        headers=HEADERS)

    return pages
