"""Requests a browser could be tricked into sending, refused before any route runs:

- a Host header this server does not answer to (DNS rebinding: a page on evil.example whose
  name now resolves to 127.0.0.1) -> 400;
- an Origin of another site, on HTTP requests and on WebSocket handshakes -> 403, in the
  dialect's own error shape;
- with `protect_meta_routes` and keys configured: /metrics, /docs, /redoc (and their assets)
  and /openapi.json without a valid key -> 401.

A JSON Content-Type is required where bodies are read (api/limits.py), so a cross-site
`text/plain` form is refused too."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from easel.api.auth import bearer_token
from easel.api.dialects.common import Dialect, scope_headers, scope_owner
from easel.api.reference import ASSETS_PATH
from easel.domain.errors import Throttled
from easel.runtime.process import Services
from easel.services.delivery.outbound import is_loopback_host

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
META_ROUTES = ("/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
               "/easel/info")
META_PREFIXES = (ASSETS_PATH,)  # the reference pages' scripts, styles and icon


def allowed_hosts(configured: Sequence[str], bind_host: str, public_url: str | None) -> set[str]:
    """The Host names served; an empty set means any (a server bound beyond loopback, where
    keys are required, answers whatever name its users reach it by)."""
    if configured:
        return {host.lower() for host in configured}
    if not is_loopback_host(bind_host):
        return set()
    hosts = {*LOOPBACK_NAMES, bind_host.lower()}
    if public_url:
        hosts.add((urlsplit(public_url).hostname or "").lower())
    return hosts


def host_of(value: str) -> str:
    """`[::1]:8000` -> `::1`, `Example.com:80` -> `example.com`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class CrossSiteGuard:
    def __init__(self, app: ASGIApp, services: Services, dialects: Sequence[Dialect]) -> None:
        self.app = app
        self.services = services
        settings = services.settings
        self.hosts = allowed_hosts(settings.allowed_hosts, settings.host, settings.public_url)
        self.dialects = list(dialects)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope_headers(scope)
        host = host_of(headers.get("host", ""))
        if self.hosts and host not in self.hosts:
            await self._refuse(scope, send, 400, "invalidHost",
                               f"this server does not answer to the host {host[:100]!r}", "Host")
            return
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(origin, host):
            await self._refuse(scope, send, 403, "forbiddenOrigin",
                               f"requests from {origin[:100]!r} are refused (another site)",
                               "Origin")
            return
        try:
            refused = self._meta_refused(scope, headers)
        except Throttled as exc:  # keys cannot be checked now (the database is down)
            await self._refuse(scope, send, 503, exc.kind.value, exc.message, "Authorization",
                               retry_after=exc.retry_after)
            return
        if refused:
            await self._refuse(scope, send, 401, "invalidApiKey", "an API key is required",
                               "Authorization")
            return
        await self.app(scope, receive, send)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        origin_host = (urlsplit(origin).hostname or "").lower()
        if self.hosts:
            return origin_host in self.hosts
        return origin_host == host  # any host served: only the page's own origin

    def _meta_refused(self, scope: Scope, headers: dict[str, str]) -> bool:
        path = scope["path"]
        meta = path in META_ROUTES or path.startswith(META_PREFIXES)
        if not self.services.settings.protect_meta_routes or not meta:
            return False
        if not self.services.keys.required():
            return False
        key = bearer_token(headers.get("authorization"))
        return self.services.keys.principal(key) is None

    async def _refuse(
        self, scope: Scope, send: Send, status: int, code: str, message: str, parameter: str,
        retry_after: int | None = None,
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        body = refusal_body(self.dialects, scope, status, code, message, parameter)
        payload = json.dumps(body).encode()
        sent = [(b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode())]
        if retry_after is not None:
            sent.append((b"retry-after", str(retry_after).encode()))
        await send({"type": "http.response.start", "status": status, "headers": sent})
        await send({"type": "http.response.body", "body": payload})


def refusal_body(
    dialects: Sequence[Dialect], scope: Scope, status: int, code: str, message: str,
    parameter: str | None,
) -> dict[str, Any]:
    """An error made before (or instead of) any route, in the shape of the dialect that owns
    the request; easel's own shape outside every dialect."""
    dialect = scope_owner(dialects, scope)
    if dialect is None:
        return {"error": message}
    return dialect.refusal(status, code, message, parameter)
