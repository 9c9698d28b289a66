"""Requests a browser could be tricked into sending, refused before any route runs:

- a Host header this server does not answer to (DNS rebinding: a page on evil.example whose
  name now resolves to 127.0.0.1) -> 400;
- an Origin of another site, on HTTP requests and on WebSocket handshakes -> 403, in the
  dialect's own error shape, unless the operator allows that site (`cors_origins`: its pages
  then get CORS headers, from Starlette's middleware inside this guard). An origin is scheme,
  host and port: a page on another port of this host is another program's, so another site;
- with `protect_meta_routes` and keys configured: /metrics, /docs, /redoc (and their assets)
  and /openapi.json without a valid key -> 401.

A JSON Content-Type is required where bodies are read (api/limits.py), so a cross-site
`text/plain` form is refused too. `render_refusal` is where every refusal of a whole request
is turned into a reply: by the dialect that owns the request, or in easel's plain shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response

from easel.api.caller import bearer_token
from easel.api.dialects.common import (
    DEFAULT_STATUS,
    Dialect,
    easel_error_body,
    scope_headers,
    scope_owner,
)
from easel.api.limits import HTTPRefusal
from easel.api.reference import ASSETS_PATH
from easel.domain.errors import EaselError, Throttled
from easel.services.port import Port

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
META_ROUTES = ("/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
               "/easel/info")
META_PREFIXES = (ASSETS_PATH,)  # the reference pages' scripts, styles and icon


DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class GuardSettings:
    """The Host names served (empty: any), whether the meta routes need a key, the other
    sites' origins whose pages may call the API (CORS; "*": any) and this server's own origins
    (its public and local URLs: its pages, wherever a proxy says they came from). Origins as
    `canonical_origin` writes them."""

    hosts: frozenset[str]
    protect_meta_routes: bool = False
    cors_origins: frozenset[str] = frozenset()
    own_origins: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int  # the scheme's own when the origin names none

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}"
        return f"{self.scheme}://{host}{port}"


def parse_origin(value: str) -> Origin | None:
    """An Origin header or a configured origin; None for `null` (a sandboxed page, a file) and
    anything else that is no http(s) origin."""
    if "\\" in value or "@" in value:  # userinfo, or a backslash parsers disagree on: no origin
        return None
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:  # a port out of range or not a number
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment:
        return None
    return Origin(scheme, parts.hostname.lower(), DEFAULT_PORTS[scheme] if port is None else port)


def canonical_origin(value: str) -> str:
    """An origin as a browser sends it (lower case, no port when it is the scheme's own: never
    `https://app.example:443`), so that a configured one matches the header; "*" as it is."""
    parsed = None if value == "*" else parse_origin(value)
    return value if parsed is None else str(parsed)


def allowed_hosts(configured: Sequence[str], bind_host: str, bind_is_loopback: bool,
                  public_url: str | None) -> frozenset[str]:
    """The Host names served; an empty set means any (a server bound beyond loopback, where
    keys are required, answers whatever name its users reach it by)."""
    if configured:
        return frozenset(host.lower() for host in configured)
    if not bind_is_loopback:
        return frozenset()
    hosts = {*LOOPBACK_NAMES, bind_host.lower()}
    if public_url:
        hosts.add((urlsplit(public_url).hostname or "").lower())
    return frozenset(hosts)


def host_of(value: str) -> str:
    """`[::1]:8000` -> `::1`, `Example.com:80` -> `example.com`."""
    return split_host(value)[0]


def split_host(value: str) -> tuple[str, int | None]:
    """A Host header's name and port: `[::1]:8000` -> (`::1`, 8000), `Example.com` ->
    (`example.com`, None); a port that is no number is None."""
    value = value.strip().lower()
    if value.startswith("["):
        if "]" not in value:
            return value, None
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""
    number = int(port) if port.isascii() and port.isdigit() and len(port) <= 5 else None
    return host, number


def _well_formed_host(value: str | None) -> bool:
    """A Host header a client could mean: a name, and a port that is a number, nothing more
    (`127.0.0.1:8000@evil.com` or `localhost:abc` are none)."""
    if value is None or not value.strip():  # none sent (HTTP/1.0): the host check decides
        return True
    name, port = split_host(value)
    has_port = ":" in value.strip().rsplit("]", 1)[-1]  # after an IPv6 literal's brackets
    return "@" not in value and "\\" not in value and bool(name) and \
        (not has_port or (port is not None and 0 < port < 65536))


def _repeated(scope: Scope, name: bytes) -> bool:
    return sum(1 for key, _ in scope.get("headers", ()) if key.lower() == name) > 1


class CrossSiteGuard:
    def __init__(self, app: ASGIApp, port: Port, dialects: Sequence[Dialect],
                 settings: GuardSettings) -> None:
        self.app = app
        self.port = port
        self.hosts = settings.hosts
        self.protect_meta_routes = settings.protect_meta_routes
        self.cors_origins = settings.cors_origins
        self.own_origins = settings.own_origins
        self.dialects = list(dialects)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            self._check(scope)
        except EaselError as refused:
            await self._refuse(scope, receive, send, refused)
            return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> None:
        headers = scope_headers(scope)
        host, port = split_host(headers.get("host", ""))
        if (self.hosts and host not in self.hosts) or not _well_formed_host(headers.get("host")):
            raise HTTPRefusal(400, "invalidHost",
                              f"this server does not answer to the host {host[:100]!r}", "Host")
        origin = headers.get("origin")
        if origin is not None and _repeated(scope, b"origin"):
            origin = "null"  # a browser sends one Origin; two are no page's, refused below
        if origin is not None and not self._origin_allowed(origin, host, port):
            raise HTTPRefusal(403, "forbiddenOrigin",
                              f"requests from {origin[:100]!r} are refused (another site)",
                              "Origin")
        if self._meta_refused(scope, headers):  # Throttled when keys cannot be checked now
            raise HTTPRefusal(401, "invalidApiKey", "an API key is required", "Authorization")

    def _origin_allowed(self, origin: str, host: str, port: int | None) -> bool:
        """Whether a page of `origin` may call, the request having come to `host`:`port`."""
        if "*" in self.cors_origins:
            return True
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        if str(parsed) in self.cors_origins or str(parsed) in self.own_origins:
            return True  # the operator lets this site's pages call (keys still apply)
        if parsed.host not in (self.hosts or {host}):  # any host served: only the page's own
            return False
        # This server's own page came to the port the request came to (the browser names it
        # in Host unless it is the scheme's own); a page on another port is another program's.
        return parsed.port == (DEFAULT_PORTS[parsed.scheme] if port is None else port)

    def _meta_refused(self, scope: Scope, headers: dict[str, str]) -> bool:
        path = scope["path"]
        meta = path in META_ROUTES or path.startswith(META_PREFIXES)
        if not self.protect_meta_routes or not meta:
            return False
        client = scope.get("client")
        address = client[0] if client else "unknown"
        return self.port.caller(bearer_token(headers.get("authorization")), address) is None

    async def _refuse(self, scope: Scope, receive: Receive, send: Send,
                      refused: EaselError) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        response = render_refusal(self.dialects, Request(scope, receive), refused)
        await response(scope, receive, send)


def render_refusal(dialects: Sequence[Dialect], request: Request, err: EaselError) -> Response:
    """A failure of a whole request as its reply: rendered by the dialect that owns the request
    (its shape, its status), easel's plain shape outside every dialect; Retry-After on every
    refusal that says when to come back."""
    dialect = scope_owner(dialects, request.scope)
    if dialect is not None:
        response = dialect.render_error(err, request)
    else:  # easel's own shape: {"error": {code, message, parameter}}
        status = err.status if isinstance(err, HTTPRefusal) else DEFAULT_STATUS[err.kind]
        code = err.code if isinstance(err, HTTPRefusal) else err.kind.value
        response = JSONResponse(easel_error_body(code, err.message, err.parameter),
                                status_code=status)
    if isinstance(err, Throttled):
        response.headers["Retry-After"] = str(err.retry_after)
    return response
