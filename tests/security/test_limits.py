"""The body size limit on a real socket: a 413 before the body is read, and a chunked body cut
off as it passes the limit. The other limits are answered at the routes, tested in-process
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
                     f"Content-Length: 50000000\r\n\r\n".encode())
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413"), reply[:200]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_chunked_oversized_body_is_cut_off(server: Server, path: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(200):
            yield b"x" * 10_000

    response = httpx.post(server.url + path, content=chunks(), timeout=30)
    assert response.status_code == 413
