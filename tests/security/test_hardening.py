"""Attacks that need a real server process over loopback, each fixed (issue: hardening): a
receiver's huge reply against the server's memory, slow receivers against its delivery slots,
malformed bodies against a kept-alive connection. The attacks on the routes themselves are
in-process (tests/edge/test_hardening.py). Address ranges beyond loopback are tested on the
guard function itself, without sockets."""

from __future__ import annotations

import base64
import ipaddress
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from easel.services.delivery.outbound import refusal
from tests.server_harness import Server, inference

MIB = 1024 * 1024


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "easel.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=60, check=False)


def rss(srv: Server) -> int:
    assert srv.proc is not None
    return int(psutil.Process(srv.proc.pid).memory_info().rss)


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


# -- 17. the SSRF guard's own deny list --------------------------------------------------------


@pytest.mark.parametrize("address", [
    "168.63.129.16", "192.0.0.1", "192.0.0.170", "fec0::1", "::10.0.0.1", "::ffff:0:10.0.0.1",
    "::ffff:0:169.254.169.254", "100.100.100.200",
])
def test_the_guard_refuses_addresses_the_interpreter_tables_miss(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_loopback=False) is not None
