"""uvicorn's HTTP protocol with two deadlines:

- for every request's headers: a client that sends its headers a byte at a time (slowloris) is
  cut off instead of holding a connection, on a new connection and between the requests of a
  kept-alive one;
- for every reply's reader: a client that reads nothing of a reply for `stall_seconds` (the
  server's write buffer full and not draining) has its connection reset, which frees the
  buffer at once (a plain close would wait, forever, for the buffer to drain). The app's sends
  then return (uvicorn marks the request disconnected), so its reply's memory is freed too.

An idle kept-alive connection (a response sent, no byte of the next request yet) is a different
thing: it stays open for the keep-alive time, which is longer than a load balancer's idle
timeout, so the balancer closes idle connections, never easel. Otherwise a request sent just as
easel closes the connection is lost on the wire (the client sees a reset, not an answer)."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

log = logging.getLogger(__name__)


def with_deadlines(seconds: float, keep_alive: float | None = None,
                   stall_seconds: float = 30.0) -> type[Any]:
    base: type[Any] = AutoHTTPProtocol
    idle_seconds = seconds if keep_alive is None else keep_alive

    class Deadlines(base):
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._idle = False
            self._header_deadline = self.loop.call_later(seconds, self._headers_too_slow)
            self._stall: asyncio.TimerHandle | None = None
            self._unsent = 0  # the write buffer when the stall deadline was last armed

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

        def pause_writing(self) -> None:
            # The write buffer passed its high-water mark: the reader has this long to read.
            super().pause_writing()
            if self._stall is None:
                self._arm_stall()

        def resume_writing(self) -> None:
            self._cancel_stall()
            super().resume_writing()

        def _arm_stall(self) -> None:
            self._unsent = self.transport.get_write_buffer_size()
            self._stall = self.loop.call_later(stall_seconds, self._reader_stalled)

        def _cancel_stall(self) -> None:
            if self._stall is not None:
                self._stall.cancel()
                self._stall = None

        def _reader_stalled(self) -> None:
            self._stall = None
            if self.transport.get_protocol() is not self:
                return  # upgraded to a WebSocket: the socket is that protocol's now
            if self.transport.get_write_buffer_size() < self._unsent:
                self._arm_stall()  # a slow reader, but a reader: another period
                return
            log.info("closed a connection whose client read nothing of a reply for %gs",
                     stall_seconds, extra={"client": _address(self.transport)})
            _reset(self.transport)

        def connection_lost(self, exc: Exception | None) -> None:
            self._header_deadline.cancel()
            self._cancel_stall()
            super().connection_lost(exc)

    return Deadlines


def _address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "-"


def _reset(transport: asyncio.Transport) -> None:
    """Close with a reset: the kernel drops what it still holds for the reader too (a plain
    close would keep sending its socket buffer, megabytes, to a reader that never reads)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
