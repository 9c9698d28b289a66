"""uvicorn's HTTP protocol with a deadline for every request's headers: a client that sends its
headers a byte at a time (slowloris) is cut off instead of holding a connection, on a new
connection and between the requests of a kept-alive one."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol


def with_header_deadline(seconds: float) -> type[Any]:
    base: type[Any] = AutoHTTPProtocol

    class HeaderDeadline(base):
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._header_deadline = self.loop.call_later(seconds, self._headers_too_slow)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._header_deadline.cancel()  # the next request's headers get their own
            self._header_deadline = self.loop.call_later(seconds, self._headers_too_slow)

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
