"""Limits: body size (413 before reading it all), prompt length and image count (per model),
per-key rate limit (429 + Retry-After, other keys unaffected), queue cap (503 + Retry-After)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.server_harness import Server, inference

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


def test_prompt_length_and_image_count_come_from_the_catalog(server: Server) -> None:
    long = server.post([inference(positivePrompt="x" * 100_000)])
    assert long.status_code == 400 and long.json()["errors"][0]["parameter"] == "positivePrompt"
    many = server.post([inference(numberResults=50)])
    assert many.status_code == 400 and many.json()["errors"][0]["parameter"] == "numberResults"


def test_rate_limit_is_per_key(make_server: Callable[..., Server]) -> None:
    srv = make_server(EASEL_API_KEYS=KEYS, EASEL_RATE_LIMIT_PER_SECOND=0.2,
                      EASEL_RATE_LIMIT_BURST=2).start()
    a = {"Authorization": "Bearer key-a"}
    b = {"Authorization": "Bearer key-b"}
    for _ in range(2):
        assert srv.post([inference(deliveryMethod="async")], headers=a).status_code == 200
    task = inference(deliveryMethod="async")
    limited = srv.post([task], headers=a)
    assert limited.status_code == 429
    assert limited.json()["errors"][0]["code"] == "rateLimitExceeded"
    assert int(limited.headers["retry-after"]) >= 1
    assert srv.db("SELECT count(*) FROM jobs WHERE task_id = ?", task["taskUUID"]) == [(0,)]
    assert srv.post([inference(deliveryMethod="async")], headers=b).status_code == 200
    # every dialect answers in its own shape, with Retry-After
    ws = httpx.post(srv.url + "/api/v3/google/imagen4-fast", json={"prompt": "x"}, headers=a)
    oa = httpx.post(srv.url + "/v1/images/generations", json={"prompt": "x"}, headers=a)
    gg = httpx.post(srv.url + "/v1beta/models/imagen-4.0-fast-generate-001:predict",
                    json={"instances": [{"prompt": "x"}]}, headers={"x-goog-api-key": "key-a"})
    assert ws.status_code == 429 and ws.json()["code"] == 429
    assert oa.status_code == 429 and oa.json()["error"]["code"] == "rate_limit_exceeded"
    assert gg.status_code == 429 and gg.json()["error"]["code"] == 429
    assert all(int(r.headers["retry-after"]) >= 1 for r in (ws, oa, gg))


def test_a_full_queue_answers_503_at_once(make_server: Callable[..., Server]) -> None:
    srv = make_server(EASEL_RUN_WORKER=0, EASEL_MAX_QUEUE_DEPTH=2).start()
    for _ in range(2):
        assert srv.post([inference(deliveryMethod="async")]).status_code == 200
    started = time.monotonic()
    full = srv.post([inference(deliveryMethod="async")])
    sync = httpx.post(srv.url + "/v1/images/generations", json={"prompt": "x"}, timeout=5)
    assert time.monotonic() - started < 1.0
    assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1
    assert "queue is full" in full.json()["errors"][0]["message"]
    assert sync.status_code == 503 and "retry-after" in sync.headers
