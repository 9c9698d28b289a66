"""uvicorn's HTTP protocol with a deadline for every request's headers: a client that sends its
headers a byte at a time (slowloris) is cut off instead of holding a connection, on a new
connection and between the requests of a kept-alive one.

An idle kept-alive connection (a response sent, no byte of the next request yet) is a different
thing: it stays open for the keep-alive time, which is longer than a load balancer's idle
timeout, so the balancer closes idle connections, never easel. Otherwise a request sent just as
easel closes the connection is lost on the wire (the client sees a reset, not an answer)."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol


def with_header_deadline(seconds: float, keep_alive: float | None = None) -> type[Any]:
    base: type[Any] = AutoHTTPProtocol
    idle_seconds = seconds if keep_alive is None else keep_alive

    class HeaderDeadline(base):
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._idle = False
            self._header_deadline = self.loop.call_later(seconds, self._headers_too_slow)

        def data_received(self, data: bytes) -> None:
            if self._idle:  # the next request's first bytes: its headers' deadline starts
                self._idle = False
                self._rearm(seconds)
            super().data_received(data)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._idle = True
            self._rearm(idle_seconds)

        def _rearm(self, after: float) -> None:
            self._header_deadline.cancel()
            self._header_deadline = self.loop.call_later(after, self._headers_too_slow)

        def _headers_too_slow(self) -> None:
            if self.transport.get_protocol() is not self:
                return  # upgraded to a WebSocket: the socket is that protocol's now
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._header_deadline.cancel()
            super().connection_lost(exc)

    return HeaderDeadline
