"""Attacks on a real server over loopback, each fixed (issue: hardening): the ones that restart,
fill a disk or wait on slow clients (a file of their own, so parallel test workers share the
slow ones out)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import websockets

from tests.server_harness import SMALL_SIZES as SMALL
from tests.server_harness import Server, free_port, inference, poll_until_done

MIB = 1024 * 1024



# -- 24. EASEL_HOST and EASEL_PORT -----------------------------------------------------------


def test_serve_listens_where_the_environment_says(tmp_path: Path) -> None:
    import os

    port = free_port()
    env = {**os.environ, "EASEL_PORT": str(port), "EASEL_HOST": "127.0.0.1",
           "EASEL_DATA_DIR": str(tmp_path / "data"), "EASEL_PRELOAD_MODELS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "easel.cli", "serve", "--no-worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)


# -- 13. a full disk -------------------------------------------------------------------------


def mount_small_disk(path: Path) -> None:
    """A 2 MiB tmpfs at `path` (root only: mounting needs it; CI runs as root)."""
    import os

    if os.geteuid() != 0:
        if os.environ.get("CI"):  # CI runs as root: there, a missing mount is a failure
            pytest.fail("the full-disk test mounts a tmpfs and needs root")
        pytest.skip("the full-disk test mounts a tmpfs and needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)], check=True)


def test_a_full_disk_refuses_new_work_keeps_accepted_jobs_and_recovers(
    make_server: Callable[..., Server],
) -> None:

    srv = make_server(EASEL_STORAGE_RETRY_SECONDS=0.5)
    srv.command = ["-m", "tests.serve", "serve", "--no-worker"]
    images = srv.data_dir / "images"
    mount_small_disk(images)
    worker: subprocess.Popen[bytes] | None = None
    try:
        srv.start()
        accepted = inference(deliveryMethod="async", numberResults=4)
        assert srv.post([accepted]).status_code == 200  # acknowledged while there is room
        filler = images / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], check=False,
                       capture_output=True)  # the image disk is full now
        # Readiness probes the disk as submissions do: once it says so, they refuse.
        deadline = time.monotonic() + 30
        while (ready := httpx.get(srv.url + "/readyz", timeout=30)).status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert "cannot be written" in ready.json()["reason"]
        refused = srv.post([inference(deliveryMethod="async")])
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0
        assert refused.json()["errors"][0]["code"] == "modelUnavailable"
        openai = httpx.post(srv.url + "/v1/images/generations", json={"prompt": "a fox"},
                            timeout=30)
        assert openai.status_code == 503
        assert openai.json()["error"]["code"] == "service_unavailable"
        log = srv.data_dir.parent / "worker.log"
        worker = srv.worker(log)
        # The worker draws the images, cannot store them, and hands the job back: never failed.
        deadline = time.monotonic() + 60
        while "goes back to the queue" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        (status, attempts), = srv.db("SELECT status, attempts FROM jobs WHERE task_id = ?",
                                     accepted["taskUUID"])
        assert status in ("queued", "processing") and attempts <= 1
        filler.unlink()  # space returns
        assert len(poll_until_done(srv, accepted["taskUUID"], timeout=120)) == 4
        deadline = time.monotonic() + 10
        while httpx.get(srv.url + "/readyz", timeout=30).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert srv.post([inference()]).status_code == 200
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(60)
        srv.stop()
        subprocess.run(["umount", "-l", str(images)], check=False)


# -- 14. SIGTERM with held sync requests -------------------------------------------------------


def test_sigterm_answers_held_requests_with_503_naming_the_job(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    import signal as signals

    catalog = tmp_path / "slow.toml"
    catalog.write_text(SMALL + "\n[backends.flux2-klein-4b]\nsteps = 100000\n")
    srv = make_server(small=False, step_seconds=0.05, EASEL_CATALOG_FILE=catalog,
                      EASEL_STAND_IN="tiny", EASEL_STAND_IN_MAX_STEPS=100000,
                      EASEL_SHUTDOWN_GRACE_SECONDS=6)
    srv.start()
    replies: list[httpx.Response] = []
    body = {"model": "imagen-4.0-fast-generate-001", "prompt": "a fox", "size": "64x64"}

    def held() -> None:
        replies.append(httpx.post(srv.url + "/v1/images/generations", json=body, timeout=120,
                                  headers={"Idempotency-Key": "held-1"}))

    thread = threading.Thread(target=held)
    thread.start()
    deadline = time.monotonic() + 60
    while srv.db("SELECT status FROM jobs") != [("processing",)]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert srv.proc is not None
    srv.proc.send_signal(signals.SIGTERM)
    thread.join(60)
    assert srv.proc.wait(60) == 0
    (reply,) = replies
    assert reply.status_code == 503 and int(reply.headers["retry-after"]) > 0
    error = reply.json()["error"]
    assert error["code"] == "service_unavailable" and "restarting" in error["message"]
    assert reply.headers["x-easel-job-id"]  # names the job that is kept
    assert srv.db("SELECT status FROM jobs") == [("queued",)]  # kept, runs after the restart


# -- 16, 19, 20. WebSocket and slow clients ----------------------------------------------------


async def test_a_result_sent_into_a_dead_connection_is_replayed_on_resume(
    server: Server,
) -> None:
    task = inference()
    ws = await websockets.connect(server.ws_url)
    await ws.send(json.dumps([{"taskType": "authentication", "apiKey": "k"}]))
    session = json.loads(await ws.recv())["data"][0]["connectionSessionUUID"]
    await ws.send(json.dumps([task]))
    deadline = time.monotonic() + 60
    while server.db("SELECT status FROM jobs WHERE task_id = ?", task["taskUUID"]) != [
            ("completed",)]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # the result went into the socket; the client never read it
    ws.transport.abort()  # gone without a close: what a dropped network looks like
    async with websockets.connect(server.ws_url) as again:
        await again.send(json.dumps([{"taskType": "authentication", "apiKey": "k",
                                      "connectionSessionUUID": session}]))
        assert json.loads(await again.recv())["data"][0]["connectionSessionUUID"] == session
        frame = json.loads(await asyncio.wait_for(again.recv(), 30))
        assert frame["data"][0]["taskUUID"] == task["taskUUID"]


async def test_an_unauthenticated_socket_is_closed_and_frames_are_counted_in_bytes(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(EASEL_API_KEYS="k", EASEL_WS_AUTH_TIMEOUT=1,
                      EASEL_MAX_BODY_BYTES=1000).start()
    async with websockets.connect(srv.ws_url) as idle:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(idle.recv(), 30)
    async with websockets.connect(srv.ws_url) as ws:
        await ws.send(json.dumps([{"taskType": "authentication", "apiKey": "k"}]))
        assert "data" in json.loads(await ws.recv())
        await ws.send(json.dumps([{"taskType": "ping", "pad": "é" * 600}], ensure_ascii=False))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))  # 600 chars, 1200 bytes
        assert frame["errors"][0]["code"] == "payloadTooLarge"


def test_slow_bodies_and_slow_headers_are_cut_off(make_server: Callable[..., Server]) -> None:
    srv = make_server(EASEL_BODY_TIMEOUT=1, EASEL_HEADER_TIMEOUT=2).start()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as slow_body:
        slow_body.sendall(b"POST /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                          b"application/json\r\nContent-Length: 1000\r\n\r\n[")
        reply = b""
        while b"timeoutBody" not in reply and (chunk := slow_body.recv(65536)):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 408") and b"timeoutBody" in reply
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as slow_headers:
        slow_headers.sendall(b"GET /livez HTTP/1.1\r\nHost: 127")
        started = time.monotonic()
        assert slow_headers.recv(1) == b""  # closed by the server
        assert time.monotonic() - started < 20
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as kept_alive:
        kept_alive.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while not first.endswith(b"}"):  # the whole first response, body included
            first += kept_alive.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        # Idle longer than the header deadline: a kept-alive connection is not a slow one
        # (it stays open for EASEL_KEEP_ALIVE_TIMEOUT, 75 s), and the next request is answered.
        time.sleep(3)
        kept_alive.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        second = b""
        while not second.endswith(b"}"):
            chunk = kept_alive.recv(65536)
            assert chunk, "closed while idle"
            second += chunk
        assert second.startswith(b"HTTP/1.1 200")
        kept_alive.sendall(b"GET /livez HTTP/1.1\r\nHo")  # the third request trickles
        started = time.monotonic()
        assert kept_alive.recv(1) == b""  # closed by the server, not left open
        assert time.monotonic() - started < 20
