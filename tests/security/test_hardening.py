"""Attacks on a real server over loopback, each fixed (issue: hardening). Address ranges beyond
loopback are tested on the guard function itself, without sockets."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import websockets

from easel.services.delivery.outbound import refusal
from tests.server_harness import Server, inference, poll_until_done

MIB = 1024 * 1024


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "easel.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=60, check=False)


def rss(srv: Server) -> int:
    assert srv.proc is not None
    return int(psutil.Process(srv.proc.pid).memory_info().rss)


# -- 1. polling ------------------------------------------------------------------------------


def test_duplicate_polls_are_answered_once_and_requests_are_bounded(server: Server) -> None:
    task = inference(numberResults=3, outputType="base64Data")
    assert server.post([task]).status_code == 200
    reply = server.post([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}] * 500)
    assert reply.status_code == 200
    assert [item["taskUUID"] for item in reply.json()["data"]] == [task["taskUUID"]] * 3
    many = [{"taskType": "getResponse", "taskUUID": str(uuid.uuid4())} for _ in range(101)]
    refused = server.post(many)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["code"] == "tooManyTasks"


def test_polls_count_against_the_callers_budget(make_server: Callable[..., Server]) -> None:
    srv = make_server(EASEL_RATE_LIMIT_PER_SECOND=0.001, EASEL_RATE_LIMIT_BURST=3).start()
    task = inference()
    assert srv.post([task]).status_code == 200
    poll = [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]
    assert [srv.post(poll).status_code for _ in range(2)] == [200, 200]
    limited = srv.post(poll)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["errors"][0]["code"] == "rateLimitExceeded"


def test_a_reply_over_the_byte_budget_is_refused_not_built(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(EASEL_MAX_REPLY_BYTES=40_000).start()  # one task of 4 fits
    tasks = [inference(numberResults=4, outputType="base64Data", deliveryMethod="async")
             for _ in range(3)]
    for task in tasks:
        assert srv.post([task]).status_code == 200
        poll_until_done(srv, task["taskUUID"])  # one task's images fit in one reply
    reply = srv.post([{"taskType": "getResponse", "taskUUID": t["taskUUID"]} for t in tasks])
    body = reply.json()
    assert len(reply.content) < 60_000
    assert any(e["code"] == "responseTooLarge" and "URL" in e["message"]
               for e in body["errors"])


# -- 2, 3. receivers that answer too much or too slowly ---------------------------------------


class HostileReceiver:
    """Answers every request with 200 and `body_bytes` of body, or trickles its status line
    one byte per `trickle` seconds. Counts connections."""

    def __init__(self, body_bytes: int = 0, trickle: float | None = None) -> None:
        self.body_bytes = body_bytes
        self.trickle = trickle
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(1 << 20)
                if self.trickle is not None:
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                        conn.sendall(bytes([byte]))
                        time.sleep(self.trickle)
                    return
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {self.body_bytes}\r\n\r\n"
                             .encode())
                chunk = b"x" * MIB
                for _ in range(self.body_bytes // MIB):
                    conn.sendall(chunk)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()


def wait_delivery(srv: Server, status: str, timeout: float = 60) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = srv.db("SELECT status, attempts, last_error FROM deliveries")
        if rows and all(row[0] == status or row[1] > 0 for row in rows):
            return rows
        time.sleep(0.1)
    raise TimeoutError(srv.db("SELECT status, attempts, last_error FROM deliveries"))


def test_a_receivers_huge_reply_is_never_read(make_server: Callable[..., Server]) -> None:
    receiver = HostileReceiver(body_bytes=512 * MIB)
    srv = make_server(EASEL_ALLOW_LOOPBACK_URLS=1).start()
    try:
        before = rss(srv)
        assert srv.post([inference(webhookURL=receiver.url("/hook"))]).status_code == 200
        rows = wait_delivery(srv, "delivered")
        assert rows[0][0] == "delivered"
        assert rss(srv) - before < 100 * MIB
    finally:
        receiver.close()


def test_a_slow_receiver_gets_one_deadline_per_attempt_and_does_not_hold_up_others(
    make_server: Callable[..., Server],
) -> None:
    slow = HostileReceiver(trickle=1.0)
    fast = HostileReceiver()
    srv = make_server(EASEL_ALLOW_LOOPBACK_URLS=1, EASEL_WEBHOOK_TIMEOUT=3,
                      EASEL_DELIVERY_PER_HOST=2, EASEL_WEBHOOK_RETRY_DELAYS="600").start()
    try:
        slow_tasks = [inference(webhookURL=slow.url(f"/s{i}")) for i in range(5)]
        assert srv.post(slow_tasks).status_code == 200
        deadline = time.monotonic() + 30
        while slow.connections < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        fast_task = inference(webhookURL=f"http://localhost:{fast.port}/f")
        assert srv.post([fast_task]).status_code == 200
        # The fast receiver's host has its own slots: delivered while the slow one trickles.
        deadline = time.monotonic() + 20
        while not srv.db("SELECT 1 FROM deliveries WHERE url LIKE '%/f' "
                         "AND status = 'delivered'"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert slow.connections <= 2  # the per-host bound
        # Each slow attempt ends at its deadline (3 s), once: no parallel duplicate.
        deadline = time.monotonic() + 60
        while len(srv.db("SELECT 1 FROM deliveries WHERE attempts = 1 AND url LIKE '%/s%'")) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        errors = {row[0] for row in srv.db("SELECT last_error FROM deliveries "
                                           "WHERE url LIKE '%/s%'")}
        assert errors == {"timed out after 3s"}
        assert slow.connections == 5
    finally:
        slow.close()
        fast.close()


# -- 4. text that breaks tokenizers ----------------------------------------------------------


def test_a_lone_surrogate_is_refused_at_submission_in_every_dialect(server: Server) -> None:
    surrogate = '"a fox \\ud800"'
    task = json.dumps({**inference(), "positivePrompt": "PLACEHOLDER"}).replace(
        '"PLACEHOLDER"', surrogate)
    calls = {
        "runware": ("/v1", f"[{task}]", "positivePrompt"),
        "openai": ("/v1/images/generations",
                   '{"model": "imagen-4.0-fast-generate-001", "prompt": ' + surrogate + "}",
                   "prompt"),
        "google": ("/v1beta/models/imagen-4.0-fast-generate-001:predict",
                   '{"instances": [{"prompt": ' + surrogate + "}]}", "instances[0].prompt"),
    }
    for path, body, parameter in calls.values():
        reply = httpx.post(server.url + path, content=body.encode(), timeout=60,
                           headers={"Content-Type": "application/json"})
        assert reply.status_code == 400, reply.text
        assert parameter in reply.text
    before = server.db("SELECT COUNT(*) FROM jobs")
    reply = httpx.post(server.url + "/api/v3/google/imagen4-fast", timeout=60,
                       content=('{"prompt": ' + surrogate + "}").encode(),
                       headers={"Content-Type": "application/json"})
    data = reply.json()["data"]
    assert reply.status_code == 200 and data["status"] == "failed" and data["code"] == 1401
    assert "prompt" in data["error"]
    assert server.db("SELECT COUNT(*) FROM jobs") == before  # no job was created


# -- 5, 6. keys: fail closed, revocation reaches open sockets ----------------------------------


def test_authentication_fails_closed_when_the_key_store_cannot_be_read(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    srv = make_server()
    srv.data_dir.mkdir(parents=True, exist_ok=True)
    key = cli(srv.data_dir, "keys", "create").stdout.strip()
    srv.start()
    bearer = {"Authorization": f"Bearer {key}"}
    assert httpx.post(srv.url + "/v1", json=[inference()], headers=bearer,
                      timeout=60).status_code == 200
    with sqlite3.connect(srv.data_dir / "easel.db") as conn:  # the key store breaks
        conn.execute("ALTER TABLE api_keys RENAME TO api_keys_gone")
    time.sleep(1.5)  # past the key cache
    for headers in ({}, bearer, {"Authorization": "Bearer wrong"}):
        reply = httpx.post(srv.url + "/v1", json=[inference()], headers=headers, timeout=60)
        assert reply.status_code in (401, 503), reply.text
    openai = httpx.post(srv.url + "/v1/images/generations", json={"prompt": "a fox"},
                        timeout=60)
    assert openai.status_code in (401, 503)


async def test_a_revoked_key_stops_working_on_an_open_websocket(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server()
    srv.data_dir.mkdir(parents=True, exist_ok=True)
    created = cli(srv.data_dir, "keys", "create")
    key = created.stdout.strip()
    key_id = key.split("_")[1]
    srv.start()
    async with websockets.connect(srv.ws_url) as ws:
        await ws.send(json.dumps([{"taskType": "authentication", "apiKey": key}]))
        assert "data" in json.loads(await ws.recv())
        assert cli(srv.data_dir, "keys", "revoke", key_id).returncode == 0
        await asyncio.sleep(1.5)  # past the key cache
        await ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert frame["errors"][0]["code"] == "invalidApiKey"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)


# -- 7. malformed JSON ----------------------------------------------------------------------


DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_INT = b'{"prompt": "a fox", "seed": ' + b"9" * 5000 + b"}"


def test_malformed_json_is_a_400_in_each_dialect_and_keep_alive_survives(
    server: Server,
) -> None:
    paths = {"/v1": None, "/api/v3/google/imagen4-fast": None,
             "/v1/images/generations": None,
             "/v1beta/models/imagen-4.0-fast-generate-001:predict": None}
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Content-Type": "application/json"}) as client:
        for path in paths:
            for body in (DEEP, HUGE_INT):
                reply = client.post(path, content=body)
                assert reply.status_code in (200, 400), (path, reply.status_code, reply.text)
                assert reply.headers["content-type"].startswith("application/json")
                if path == "/api/v3/google/imagen4-fast" and reply.status_code == 200:
                    assert reply.json()["data"]["status"] == "failed"
                assert client.get("/livez").status_code == 200  # the connection still works
        nested = b'{"m":' * 50_000 + b"1" + b"}" * 50_000
        packed = zlib.compress(nested)
        forged = "rf-" + base64.urlsafe_b64encode(packed).decode().rstrip("=")
        reply = client.get(f"/api/v3/predictions/{forged[:6000]}/result")
        assert reply.status_code in (400, 404) and len(reply.content) < 10_000


async def test_malformed_json_on_the_websocket_keeps_the_session(server: Server) -> None:
    async with websockets.connect(server.ws_url, max_size=None) as ws:
        await ws.send(DEEP.decode())
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert frame["errors"][0]["code"] in ("invalidJSON", "invalidPayload")
        await ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["data"][0]["pong"] is True


# -- 8, 15, 21. bounds on single fields --------------------------------------------------------


def test_a_huge_ttl_is_refused_naming_ttl(server: Server) -> None:
    reply = server.post([inference(ttl=10**12)])
    assert reply.status_code == 400
    error = reply.json()["errors"][0]
    assert error["parameter"] == "ttl" and error["code"] == "invalidTtl"


@pytest.mark.parametrize("output_type", [{"a": 1}, [["URL"]], [{"x": 1}]])
def test_output_type_of_the_wrong_shape_is_a_400(server: Server, output_type: Any) -> None:
    reply = server.post([inference(outputType=output_type)])
    assert reply.status_code == 400
    assert reply.json()["errors"][0]["code"] == "unsupportedOutputType"


def test_a_task_uuid_in_another_case_is_the_same_task(server: Server) -> None:
    task = inference(deliveryMethod="async")
    upper = {**task, "taskUUID": task["taskUUID"].upper()}
    assert server.post([task]).status_code == 200
    assert server.post([upper]).status_code == 200
    count = server.db("SELECT COUNT(*) FROM jobs WHERE task_id = ?", task["taskUUID"])
    assert count == [(1,)]
    assert server.db("SELECT COUNT(*) FROM jobs WHERE task_id = ?", upper["taskUUID"]) == [(0,)]


# -- 9. the queue cap is atomic --------------------------------------------------------------


def test_one_batch_cannot_exceed_the_queue_cap(make_server: Callable[..., Server]) -> None:
    srv = make_server(EASEL_MAX_QUEUE_DEPTH=10, EASEL_RATE_LIMIT_BURST=10_000)
    srv.command = ["-m", "easel.cli", "serve", "--no-worker"]  # nothing drains the queue
    srv.start()
    tasks = [inference(deliveryMethod="async") for _ in range(100)]
    body = srv.post(tasks).json()
    assert len(body["data"]) == 10
    assert {e["code"] for e in body["errors"]} == {"modelUnavailable"}
    assert srv.db("SELECT COUNT(*) FROM jobs") == [(10,)]


# -- 10. cross-site requests -----------------------------------------------------------------


async def test_foreign_hosts_origins_and_non_json_bodies_are_refused(server: Server) -> None:
    evil_host = httpx.post(server.url + "/v1", json=[inference()],
                           headers={"Host": "evil.example"}, timeout=30)
    assert evil_host.status_code == 400
    evil_origin = httpx.post(server.url + "/v1", json=[inference()],
                             headers={"Origin": "http://evil.example"}, timeout=30)
    assert evil_origin.status_code == 403
    assert evil_origin.json()["errors"][0]["code"] == "forbiddenOrigin"
    plain = httpx.post(server.url + "/v1/images/generations", timeout=30,
                       content=b'{"prompt": "a fox"}', headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415 and plain.json()["error"]["param"] == "Content-Type"
    plain_runware = httpx.post(server.url + "/v1", content=json.dumps([inference()]).encode(),
                               headers={"Content-Type": "text/plain"}, timeout=30)
    assert plain_runware.status_code == 415
    same_origin = httpx.post(server.url + "/v1", json=[inference()], timeout=60,
                             headers={"Origin": server.url})
    assert same_origin.status_code == 200
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(server.ws_url, origin="http://evil.example"):
            pass


# -- 11, 12. callers see only their own jobs -------------------------------------------------


async def test_ids_idempotency_and_sessions_are_scoped_to_the_key(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(EASEL_API_KEYS="key-a,key-b").start()
    a = {"Authorization": "Bearer key-a"}
    b = {"Authorization": "Bearer key-b"}
    task = inference()
    first = httpx.post(srv.url + "/v1", json=[task], headers=a, timeout=60).json()["data"]
    # B reads nothing of A's task, and may use the same taskUUID for a job of its own.
    poll = [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]
    stolen = httpx.post(srv.url + "/v1", json=poll, headers=b, timeout=60)
    assert stolen.json()["errors"][0]["code"] == "taskNotFound"
    own = httpx.post(srv.url + "/v1", json=[{**task, "positivePrompt": "b's own"}],
                     headers=b, timeout=60).json()["data"]
    assert own[0]["imageUUID"] != first[0]["imageUUID"]
    # The same Idempotency-Key from two keys: two jobs.
    body = {"model": "imagen-4.0-fast-generate-001", "prompt": "a fox",
            "response_format": "b64_json"}
    one = httpx.post(srv.url + "/v1/images/generations", json=body, timeout=60,
                     headers={**a, "Idempotency-Key": "same"})
    two = httpx.post(srv.url + "/v1/images/generations", json=body, timeout=60,
                     headers={**b, "Idempotency-Key": "same"})
    assert one.headers["x-easel-job-id"] != two.headers["x-easel-job-id"]
    # A Runware poll cannot read an OpenAI job by its id.
    cross = httpx.post(srv.url + "/v1", headers=a, timeout=60, json=[
        {"taskType": "getResponse", "taskUUID": one.headers["x-easel-job-id"]}])
    assert cross.json()["errors"][0]["code"] == "taskNotFound"
    # WaveSpeed: B cannot poll or cancel A's prediction.
    made = httpx.post(srv.url + "/api/v3/google/imagen4-fast", json={"prompt": "a fox"},
                      headers=a, timeout=60).json()["data"]
    assert httpx.get(made["urls"]["get"], headers=b, timeout=30).status_code == 404
    assert httpx.post(f"{srv.url}/api/v3/predictions/{made['id']}/cancel", headers=b,
                      timeout=30).status_code == 404
    assert httpx.get(f"{srv.url}/easel/jobs/{made['id']}", headers=b,
                     timeout=30).status_code == 404
    assert httpx.get(made["urls"]["get"], headers=a, timeout=30).status_code == 200
    # WebSocket: B resuming A's session gets a session of its own.
    async with websockets.connect(srv.ws_url) as ws:
        await ws.send(json.dumps([{"taskType": "authentication", "apiKey": "key-a"}]))
        session_a = json.loads(await ws.recv())["data"][0]["connectionSessionUUID"]
    async with websockets.connect(srv.ws_url) as ws:
        await ws.send(json.dumps([{"taskType": "authentication", "apiKey": "key-b",
                                   "connectionSessionUUID": session_a}]))
        session_b = json.loads(await ws.recv())["data"][0]["connectionSessionUUID"]
    assert session_b != session_a


# -- 17. the SSRF guard's own deny list --------------------------------------------------------


@pytest.mark.parametrize("address", [
    "168.63.129.16", "192.0.0.1", "192.0.0.170", "fec0::1", "::10.0.0.1", "::ffff:0:10.0.0.1",
    "::ffff:0:169.254.169.254", "100.100.100.200",
])
def test_the_guard_refuses_addresses_the_interpreter_tables_miss(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_loopback=False) is not None


# -- 18. forged WaveSpeed refusal ids --------------------------------------------------------


def test_forged_and_oversized_refusal_ids_are_not_found(server: Server) -> None:
    refused = httpx.post(server.url + "/api/v3/google/imagen4-fast", json={}, timeout=30)
    real = refused.json()["data"]
    assert httpx.get(real["urls"]["get"], timeout=30).json()["data"]["status"] == "failed"
    message = {"m": "google/imagen4-fast", "c": 1401, "e": "PWNED " * 10, "p": None,
               "t": "2026-01-01T00:00:00.000Z"}
    packed = zlib.compress(json.dumps(message).encode())
    forged = "rf-" + base64.urlsafe_b64encode(packed).decode().rstrip("=")
    reply = httpx.get(f"{server.url}/api/v3/predictions/{forged}/result", timeout=30)
    assert reply.status_code == 404 and "PWNED" not in reply.text
    big = "rf-" + "A" * 11_000
    reply = httpx.get(f"{server.url}/api/v3/predictions/{big}/result", timeout=30)
    assert reply.status_code == 404 and len(reply.content) < 2000


# -- 22. protected meta routes ---------------------------------------------------------------


def test_metrics_and_docs_can_require_a_key(make_server: Callable[..., Server]) -> None:
    srv = make_server(EASEL_API_KEYS="k", EASEL_PROTECT_META_ROUTES=1).start()
    for path in ("/metrics", "/docs", "/redoc", "/openapi.json"):
        assert httpx.get(srv.url + path, timeout=30).status_code == 401, path
        assert httpx.get(srv.url + path, headers={"Authorization": "Bearer k"},
                         timeout=30).status_code == 200, path
    assert httpx.get(srv.url + "/livez", timeout=30).status_code == 200


# -- 23. a partly refused batch says when to retry ---------------------------------------------


def test_a_batch_partly_over_the_rate_limit_carries_retry_after(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(EASEL_RATE_LIMIT_PER_SECOND=0.001, EASEL_RATE_LIMIT_BURST=2).start()
    reply = srv.post([inference(deliveryMethod="async") for _ in range(4)])
    assert reply.status_code == 200
    assert len(reply.json()["data"]) == 2 and len(reply.json()["errors"]) == 2
    assert int(reply.headers["retry-after"]) >= 1
