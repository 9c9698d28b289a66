"""The limits of the HTTP layer on a real socket: a 413 before the body is read, a chunked body
cut off as it passes the limit, and request headers over their size or count refused with 431
before any route runs. The other limits are answered at the routes, tested in-process
(tests/edge/test_keys_and_limits.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.server_harness import Server

KEYS = "key-a,key-b"
ENDPOINTS = ["/v1", "/api/v3/google/imagen4-fast", "/v1/images/generations",
             "/v1beta/models/imagen-4.0-fast-generate-001:predict"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_declared_oversized_body_is_refused_unread(server: Server, path: str) -> None:
    """Only the headers are sent; the 413 comes back without the server waiting for the body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\n"
                     f"Content-Length: {100 * 1024 * 1024}\r\n\r\n".encode())
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413"), reply[:200]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_chunked_oversized_body_is_cut_off(server: Server, path: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(1_400):  # 70 MB, past the default 64 MiB
            yield b"x" * 50_000

    response = httpx.post(server.url + path, content=chunks(), timeout=30)
    assert response.status_code == 413


def exchange(port: int, request: bytes, chunk: int = 0) -> bytes:
    """Send `request` (in pieces of `chunk` bytes, each its own write, when given) and read the
    answer to its end. A server that stops reading may reset the connection once it has
    answered: what was read by then is the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        pieces = [request[i:i + chunk] for i in range(0, len(request), chunk)] if chunk \
            else [request]
        try:
            for piece in pieces:
                sock.sendall(piece)
        except OSError:  # refused mid-way: the answer is already on its way back
            pass
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except OSError:
            pass
        return answer


def get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(("what", "request_bytes", "chunk"), [
    ("one 8 MiB header", get("/livez", "X-Big: " + "a" * (8 << 20)), 0),
    ("one 8 MiB header, sent slowly in pieces", get("/livez", "X-Big: " + "a" * (8 << 20)),
     16_384),
    ("an 8 MiB header that never ends, not held until it does",
     get("/livez", "X-Big: " + "a" * (8 << 20))[:-4], 16_384),
    ("a 100 KiB header", get("/livez", "Cookie: " + "c" * 100_000), 0),
    ("a 1 MiB path", get("/livez?" + "q" * (1 << 20)), 0),
    ("200 000 headers", get("/livez", *[f"X-{i}: v" for i in range(200_000)]), 0),
    ("101 headers (Host and Connection among them)",
     get("/livez", *[f"X-{i}: v" for i in range(99)]), 0),
    ("a WebSocket handshake with 1000 headers",
     get("/v1", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", *[f"X-{i}: v" for i in range(1000)]),
     0),
])
def test_request_headers_over_their_limits_are_refused(
    server: Server, what: str, request_bytes: bytes, chunk: int
) -> None:
    """431 for headers over 64 KiB or over 100 of them (the Host header is one), the request
    never reaching a route; the server then answers the next request as before."""
    answer = exchange(server.port, request_bytes, chunk)
    assert answer.startswith(b"HTTP/1.1 431 "), (what, answer[:200])
    assert b"headersTooLarge" in answer
    healthy = exchange(server.port, get("/livez"))
    assert healthy.startswith(b"HTTP/1.1 200 "), healthy[:200]


def test_headers_within_the_limits_are_served(server: Server) -> None:
    """A browser's few KiB of cookies, sent in pieces, and a request of 100 headers in all."""
    cookies = get("/livez", *[f"Cookie: c{i}=" + "x" * 4000 for i in range(12)])
    assert exchange(server.port, cookies, chunk=1000).startswith(b"HTTP/1.1 200 ")
    many = get("/livez", *[f"X-{i}: v" for i in range(98)])  # with Host and Connection: 100
    assert exchange(server.port, many).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("endless", [
    b"2\r\n[]\r\n0\r\nX-Trail: ",  # a trailer whose value never ends
    b"1;ext=",  # a chunk extension that never ends
])
def test_endless_trailers_and_chunk_extensions_are_cut_off(
    server: Server, endless: bytes
) -> None:
    """After the headers, bytes the parser hands nothing of (httptools copied a growing trailer
    value whole at every read, stalling every request): the connection is cut once they pass
    the header bound, and another client is served all the while."""
    start = (b"POST /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n") + endless
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(start)
        try:
            for _ in range(2_000):  # up to 128 MiB, in 64 KiB writes
                sock.sendall(b"a" * 65_536)
                sent += 65_536
        except OSError:  # cut off: what was sent by then is bounded
            pass
    assert sent < 16 << 20, f"{sent} bytes went in and the connection was still open"
    healthy = httpx.get(f"{server.url}/livez", timeout=5)
    assert healthy.status_code == 200
