"""uvicorn's HTTP protocol with a deadline for a connection's request headers: a client that
sends its headers a byte at a time (slowloris) is cut off instead of holding a connection."""

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

        def _headers_too_slow(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._header_deadline.cancel()
            super().connection_lost(exc)

    return HeaderDeadline
