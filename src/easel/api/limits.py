"""Abuse limits, in one place for every dialect.

- Request body size: `read_body` refuses a body whose Content-Length is over the limit before
  reading any of it, and stops reading a chunked body as soon as it passes the limit (413).
- Prompt length and images per request: per model, in the catalog (`plan` checks them).
- Per-key rate limit: a token bucket per caller (API key, or client address when no keys are
  configured); over it, submissions get 429 with Retry-After and other callers are unaffected.
- Queue depth: above `max_queue_depth` queued jobs, submissions get 503 with Retry-After at once.

Dialects render the refusals in their own shapes (RATE_LIMITED -> 429, UNAVAILABLE -> 503); the
ASGI middleware here adds the Retry-After header to that response, whatever the dialect.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from fastapi import Request

from easel.domain.errors import ErrorKind, Throttled
from easel.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# One mutable dict per request/WebSocket: tasks a handler starts copy the context and so share
# the dict, which is how the principal reaches JobService.submit and Retry-After reaches the reply.
_request: ContextVar[dict[str, Any] | None] = ContextVar("easel_request", default=None)


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than {limit} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes `limit` (never buffered whole first)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


# -- who is calling ------------------------------------------------------------------------------


def set_principal(principal: str) -> None:
    context = _request.get()
    if context is not None:
        context["principal"] = principal


def current_principal() -> str:
    context = _request.get()
    if context is None:
        return "internal"
    return str(context.get("principal", "anonymous"))


def _note_retry_after(seconds: int) -> None:
    context = _request.get()
    if context is not None:
        context["retry_after"] = seconds


class RequestContext:
    """ASGI middleware: a context per request, and Retry-After on 429/503 replies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        context: dict[str, Any] = {"principal": f"ip:{client[0] if client else 'unknown'}"}
        token = _request.set(context)

        async def send_with_retry_after(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (429, 503):
                retry = context.get("retry_after")
                headers = list(message.get("headers", []))
                if retry is not None and not any(k.lower() == b"retry-after" for k, _ in headers):
                    headers.append((b"retry-after", str(retry).encode()))
                    message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_retry_after)
        finally:
            _request.reset(token)


# -- admission: rate and queue -------------------------------------------------------------------


class TokenBuckets:
    """One bucket per caller: `burst` tokens, refilled at `rate` per second."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # principal -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, principal: str) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(principal, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[principal] = (tokens - 1.0, now)
                return 0.0
            self._buckets[principal] = (tokens, now)
            if len(self._buckets) > 100_000:  # forget full buckets: memory stays bounded
                self._buckets = {p: v for p, v in self._buckets.items() if v[0] < self.burst}
            return (1.0 - tokens) / self.rate


class Admission:
    """The checks JobService.submit runs before a job is queued."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        rate = settings.rate_limit_per_second
        self.buckets = TokenBuckets(rate, settings.rate_limit_burst) if rate > 0 else None

    def check_rate(self) -> None:
        if self.buckets is None:
            return
        principal = current_principal()
        wait = self.buckets.take(principal)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            _note_retry_after(seconds)
            raise Throttled(
                ErrorKind.RATE_LIMITED,
                f"rate limit exceeded ({self.settings.rate_limit_per_second:g} requests/s, "
                f"burst {self.settings.rate_limit_burst}); retry in {seconds}s", seconds,
            )

    @property
    def queue_capped(self) -> bool:
        return self.settings.max_queue_depth > 0

    def check_queue(self, depth: int) -> None:
        if self.queue_capped and depth >= self.settings.max_queue_depth:
            seconds = 5
            _note_retry_after(seconds)
            raise Throttled(
                ErrorKind.UNAVAILABLE,
                f"the queue is full ({depth} jobs waiting); retry in {seconds}s", seconds,
            )
