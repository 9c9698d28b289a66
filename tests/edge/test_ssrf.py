"""Webhook and upload URLs are vetted at submission: refused targets get a 400 in the dialect's
shape naming the parameter, nothing is queued and no socket is opened."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.edge.conftest import KEY, Edge
from tests.server_harness import inference

KEYED = {"Authorization": f"Bearer {KEY}"}

BAD = [
    "http://169.254.169.254/latest/meta-data",
    "http://127.0.0.1:{port}/hook",
    "http://[::1]:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",
    "http://10.0.0.5/hook",
    "http://100.64.0.1/hook",
    "http://[fd00:ec2::254]/hook",
    "http://0.0.0.0:{port}/hook",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://localhost:{port}/hook",
    "file:///etc/passwd",
]


@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[int, list[object]]]:
    """A loopback socket that records any connection (there must be none)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.2)
    seen: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                seen.append(sock.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1], seen
    stop.set()
    thread.join()
    sock.close()


@pytest.mark.parametrize("template", BAD)
@pytest.mark.parametrize("field", ["webhookURL", "uploadEndpoint"])
def test_runware_refuses(edge: Edge, listener: tuple[int, list[object]], template: str,
                         field: str) -> None:
    port, seen = listener
    task = inference(deliveryMethod="async", **{field: template.format(port=port)})
    response = edge.runware([task])
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["parameter"] == field and error["code"] == f"invalid{field[0].upper()}{field[1:]}"
    assert edge.db("SELECT count(*) FROM jobs WHERE task_id = ?", task["taskUUID"]) == [(0,)]
    assert seen == []


@pytest.mark.parametrize("template", BAD[:4])
def test_wavespeed_refuses(edge: Edge, listener: tuple[int, list[object]],
                           template: str) -> None:
    port, seen = listener
    url = template.format(port=port)
    by_query = edge.client.post("/api/v3/google/imagen4-fast", params={"webhook": url},
                                json={"prompt": "x"}, headers=KEYED)
    by_body = edge.client.post("/api/v3/google/imagen4-fast",
                               json={"prompt": "x", "webhook_url": url}, headers=KEYED)
    for response, name in ((by_query, "webhook"), (by_body, "webhook_url")):
        assert response.status_code == 400
        assert response.json()["code"] == 400 and response.json()["message"].startswith(name)
    assert seen == []


def test_an_unresolvable_name_is_accepted_and_checked_again_when_sent(edge: Edge) -> None:
    task = inference(deliveryMethod="async", webhookURL="https://hooks.example.invalid/x")
    assert edge.runware([task]).status_code == 200
