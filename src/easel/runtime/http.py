"""uvicorn's HTTP protocol (httptools), with what it lacks against a hostile client.

A deadline for every request's headers: a client that sends its headers a byte at a time
(slowloris) is cut off instead of holding a connection, on a new connection and between the
requests of a kept-alive one. An idle kept-alive connection (a response sent, no byte of the
next request yet) is a different thing: it stays open for the keep-alive time, which is longer
than a load balancer's idle timeout, so the balancer closes idle connections, never easel.
Otherwise a request sent just as easel closes the connection is lost on the wire (the client
sees a reset, not an answer).

Bounds on a request's headers, the request line included: llhttp has none, and httptools holds
a header's value whole until it ends, so one client could make the server hold megabytes a
connection (an 8 MiB header and 204 800 headers were answered 200). Over a bound: 431 in
easel's error shape, before any route runs; WebSocket handshakes are HTTP requests here too.

A deadline for every reply's reader: a client that reads nothing of a reply for `stall_seconds`
(the server's write buffer full and not draining) has its connection reset, which frees the
buffer at once (a plain close would wait, forever, for the buffer to drain). The app's sends
then return (uvicorn marks the request disconnected), so its reply's memory is freed too."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from easel.api.dialects.common import easel_error_body

# What real clients send is far below both: a browser's cookies for a site are a few KiB
# (4 KiB a cookie), the providers' SDKs send about a dozen short headers, and a proxy adds a
# few more. Servers in front are stricter still (nginx: lines of 8 KiB; Apache: 100 fields).
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100

END_OF_HEADERS = b"\r\n\r\n"

log = logging.getLogger(__name__)


class HeadersTooLarge(Exception):
    """Raised in httptools' callbacks: it stops parsing the request at once."""


def http_protocol(
    header_timeout: float, keep_alive: float | None = None,
    max_header_bytes: int = MAX_HEADER_BYTES, max_headers: int = MAX_HEADERS,
    stall_seconds: float = 30.0,
) -> type[Any]:
    # httptools, not uvicorn's "auto" choice: the bounds count in its callbacks (uvicorn's
    # standard extra, which easel depends on, always installs it).
    base: type[Any] = HttpToolsProtocol
    idle_seconds = header_timeout if keep_alive is None else keep_alive

    class EaselHTTP(base):
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._idle = False
            self._header_deadline = self.loop.call_later(header_timeout, self._headers_too_slow)
            self._in_headers = False  # between a request's first byte and its headers' end
            self._header_bytes = self._header_count = 0  # as the parser hands them over
            self._unparsed_bytes = 0  # of the headers, read after the piece they began in
            self._last_bytes = b""  # where the blank line that ends the headers may begin
            self._over_bounds = False
            self._refused = False
            self._silent_bytes = 0  # fed to the parser since it last handed anything over
            self._stall: asyncio.TimerHandle | None = None
            self._unsent = 0  # the write buffer when the stall deadline was last armed

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # answered: dropped until the client closes or the deadline passes
            if self._idle:  # the next request's first bytes: its headers' deadline starts
                self._idle = False
                self._rearm(header_timeout)
            if self._in_headers:
                # httptools holds a header's bytes until the header ends, unseen: count them
                # as they arrive (each piece after the first; the first is one read's worth).
                self._unparsed_bytes += _header_part(self._last_bytes, data)
                if self._unparsed_bytes > max_header_bytes:
                    self._refuse_headers()
                    return
            self._last_bytes = data[-3:]
            in_headers = self._in_headers
            self._silent_bytes += len(data)
            super().data_received(data)
            if not in_headers and not self._in_headers and \
                    self._silent_bytes > max_header_bytes:
                # After the headers, bytes the parser hands nothing of: a chunk extension or
                # a trailer that never ends (httptools copies a growing trailer value whole at
                # every read, which stalls the event loop). No client sends that much of them.
                log.info("closed a connection sending %d bytes of chunk extensions or "
                         "trailers", self._silent_bytes,
                         extra={"client": _address(self.transport)})
                self._refused = True
                _reset(self.transport)

        def _heard(self) -> None:
            """The parser handed something over: the bytes so far were a request's own."""
            self._silent_bytes = 0

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True
            self._header_bytes = self._header_count = self._unparsed_bytes = 0
            self._heard()

        def on_body(self, body: bytes) -> None:
            self._heard()
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._heard()
            super().on_message_complete()

        def on_chunk_header(self) -> None:
            self._heard()

        def on_chunk_complete(self) -> None:
            self._heard()

        def on_url(self, url: bytes) -> None:
            self._count(len(url), 0)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4, 1)  # with ": " and the line's end
            self._heard()
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_headers = False
            super().on_headers_complete()

        def _count(self, size: int, fields: int) -> None:
            self._header_bytes += size
            self._header_count += fields
            if self._header_bytes > max_header_bytes or self._header_count > max_headers:
                self._over_bounds = True
                raise HeadersTooLarge  # uvicorn answers a parser error: send_400_response

        def send_400_response(self, msg: str) -> None:
            if self._over_bounds:
                self._refuse_headers()
            else:
                super().send_400_response(msg)

        def _refuse_headers(self) -> None:
            self._refused = True
            body = json.dumps(easel_error_body(
                "headersTooLarge", f"the request's headers are over {max_header_bytes} bytes "
                f"or {max_headers} fields", "headers")).encode()
            head = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
            head += [name + b": " + value + b"\r\n"
                     for name, value in self.server_state.default_headers]
            head.append(b"content-type: application/json\r\ncontent-length: %d\r\n"
                        b"connection: close\r\n\r\n" % len(body))
            self.transport.write(b"".join(head) + body)
            # Closed for writing only: a client still sending its headers reads the answer
            # rather than a reset, its bytes are dropped, and the header deadline closes it.
            if self.transport.can_write_eof():
                self.transport.write_eof()
            else:
                self.transport.close()

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

    return EaselHTTP


def _header_part(before: bytes, data: bytes) -> int:
    """How many bytes of `data` belong to the headers it continues: up to the blank line that
    ends them (which may have begun in `before`, the last bytes read), or all of it."""
    end = (before + data).find(END_OF_HEADERS)
    return len(data) if end < 0 else max(0, end + len(END_OF_HEADERS) - len(before))


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
