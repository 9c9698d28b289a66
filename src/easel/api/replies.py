"""Replies in flight: the bytes of large replies (base64 images) the server holds for callers
until each caller has read them, bounded per caller and for the whole process.

A reply is built whole in memory, and a client that asks for it and never reads keeps it
there. So a route reserves a reply's size before building it (`RepliesInFlight.reserve`: a
RepliesOverBudget, 429 with Retry-After in the dialect's shape, when the caller or the process
is over its bound), and `PacedReplies` hands every body to the server in chunks, so that the
server's flow control holds the rest back at the client's pace, and releases the reservation
once the body is handed over or the client is gone. A client that reads nothing for
`reply_stall_seconds` has its connection cut by the server's protocol (runtime/http.py), which
frees what it held. Runware's WebSocket reserves the same way for the frames it queues."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from easel.domain.errors import ErrorKind, Throttled

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CHUNK_BYTES = 64 * 1024  # uvicorn's write buffer high-water mark: one chunk past it at most
RETRY_AFTER_SECONDS = 1  # replies drain at their readers' pace; a stalled one is cut off
HOLD = "reply_hold"  # the request's ReplyHold, in the ASGI scope's state


@dataclass(frozen=True)
class ReplyLimits:
    """Bytes of replies in flight one caller may have, and the whole process."""

    per_caller: int
    total: int


class RepliesOverBudget(Throttled):
    """A reply refused before it is built: too many bytes in flight (429, Retry-After)."""

    def __init__(self, message: str, parameter: str | None) -> None:
        super().__init__(ErrorKind.RATE_LIMITED, message, RETRY_AFTER_SECONDS)
        self.parameter = parameter


class Reservation:
    """Bytes reserved for one reply; `release` gives them back (once, however often called)."""

    def __init__(self, ledger: RepliesInFlight, principal: str, size: int) -> None:
        self.ledger = ledger
        self.principal = principal
        self.size = size
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.ledger.give_back(self.principal, self.size)


class RepliesInFlight:
    """The ledger of reserved reply bytes, per caller (an API key's principal, or the client
    address without keys: the rate limit's bucket) and in all. A reply with nothing else in
    flight (the caller's, for the caller's bound; anyone's, for the total) may always be sent,
    however large, so that no reply is impossible to get; past that, a reservation over either
    bound is refused. One event loop owns it: no lock."""

    def __init__(self, limits: ReplyLimits) -> None:
        self.limits = limits
        self.total = 0
        self.by_caller: dict[str, int] = {}

    def held_by(self, principal: str) -> int:
        return self.by_caller.get(principal, 0)

    def reserve(self, principal: str, size: int, parameter: str | None = None,
                advice: str = "", own: int = 0) -> Reservation:
        """`parameter`: the request field that made the reply large; `advice`: how to ask for
        a smaller one (both go into a refusal). `own`: bytes already reserved for the same
        reply, which a reply with nothing else in flight may pass the bounds with."""
        held, limits = self.held_by(principal), self.limits
        then = f"; {advice}" if advice else ""
        if held > own and held + size > limits.per_caller:
            raise RepliesOverBudget(
                f"this caller already has {held} bytes of replies not yet read, and this one "
                f"needs {size} more: over EASEL_REPLY_BYTES_PER_CALLER ({limits.per_caller} "
                f"bytes in flight per caller); read the replies asked for first{then}",
                parameter)
        if self.total > own and self.total + size > limits.total:
            raise RepliesOverBudget(
                f"the server has {self.total} bytes of replies not yet read, and this one "
                f"needs {size} more: over EASEL_REPLY_BYTES_TOTAL ({limits.total} bytes in "
                f"flight in all); retry shortly{then}", parameter)
        self.by_caller[principal] = held + size
        self.total += size
        return Reservation(self, principal, size)

    def give_back(self, principal: str, size: int) -> None:
        left = self.held_by(principal) - size
        if left > 0:
            self.by_caller[principal] = left
        else:
            self.by_caller.pop(principal, None)
        self.total -= size


class ReplyHold:
    """The reservations of one reply (an HTTP request's, a WebSocket task's), released
    together when it has gone."""

    def __init__(self, ledger: RepliesInFlight) -> None:
        self.ledger = ledger
        self.reservations: list[Reservation] = []

    @property
    def size(self) -> int:
        return sum(r.size for r in self.reservations if not r.released)

    def reserve(self, principal: str, size: int, parameter: str | None = None,
                advice: str = "") -> None:
        self.reservations.append(
            self.ledger.reserve(principal, size, parameter, advice, own=self.size))

    def release(self) -> None:
        for reservation in self.reservations:
            reservation.release()
        self.reservations.clear()


def hold_of(conn: HTTPConnection) -> ReplyHold:
    """The request's hold, which PacedReplies made (a route reserves its reply's bytes here)."""
    hold: ReplyHold = conn.scope["state"][HOLD]
    return hold


def replies_of(conn: HTTPConnection) -> RepliesInFlight:
    """The ledger the app was built with (WebSocket sessions reserve their frames in it)."""
    replies: RepliesInFlight = conn.app.state.replies
    return replies


class PacedReplies:
    """Every HTTP reply's body goes to the server `chunk_bytes` at a time: uvicorn waits for
    its write buffer to drain before each send, so an unread reply stays here, in the bytes
    reserved for it, instead of whole in the transport's buffer. The request's reservations
    are released when the app is done: the body handed over, or the client gone."""

    def __init__(self, app: ASGIApp, replies: RepliesInFlight,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.app = app
        self.replies = replies
        self.chunk_bytes = chunk_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hold = ReplyHold(self.replies)
        scope.setdefault("state", {})[HOLD] = hold

        async def paced(message: Message) -> None:
            body = message.get("body", b"")
            if message["type"] != "http.response.body" or len(body) <= self.chunk_bytes:
                await send(message)
                return
            more = message.get("more_body", False)
            step = self.chunk_bytes
            for start in range(0, len(body), step):
                await send({"type": "http.response.body", "body": body[start:start + step],
                            "more_body": more or start + step < len(body)})

        try:
            await self.app(scope, receive, paced)
        finally:
            hold.release()
