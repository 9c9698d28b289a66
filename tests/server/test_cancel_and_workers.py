"""Cancel on a real server (WaveSpeed's verb, `easel jobs cancel`), and `easel worker`
processes beside `easel serve --no-worker` on one SQLite file, kill -9 included."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.server_harness import SMALL_SIZES, Server, inference, poll_until_done

# A job that runs for many seconds on the tiny stand-in: many steps at 64x64.
SLOW_STEPS = 4000


def slow_catalog(path: Path, steps: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SMALL_SIZES + f"\n[backends.flux2-klein-4b]\nsteps = {steps}\n")
    return path


def slow_server(
    make_server: Callable[..., Server], tmp_path: Path, steps: int = SLOW_STEPS, **env: Any
) -> Server:
    catalog = slow_catalog(tmp_path / "slow.toml", steps)
    # The tiny stand-ins keep each tier's own schedule, so the step count here is what runs,
    # each step a twentieth of a second of the fake engine's work.
    return make_server(small=False, step_seconds=0.05, EASEL_CATALOG_FILE=catalog,
                       EASEL_STAND_IN="tiny", EASEL_STAND_IN_MAX_STEPS=steps, **env)


def job_view(srv: Server, job_id: str) -> dict[str, Any]:
    reply = httpx.get(f"{srv.url}/easel/jobs/{job_id}", timeout=10)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def wait_denoising(srv: Server, job_id: str, timeout: float = 120,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The job once it is denoising. A job submitted by a request still in flight (another
    thread's held request) may not be stored yet: not found is "not yet" until the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = httpx.get(f"{srv.url}/easel/jobs/{job_id}", timeout=10, headers=headers)
        if reply.status_code != 404:
            assert reply.status_code == 200, reply.text
            view = dict(reply.json())
            if view["status"] == "processing" and view["progress"]["step"] > 0:
                return view
        time.sleep(0.1)
    raise TimeoutError(job_id)


def wait_terminal(srv: Server, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = job_view(srv, job_id)
        if view["status"] in ("completed", "failed", "cancelled"):
            return view
        time.sleep(0.05)
    raise TimeoutError(job_id)


def test_wavespeed_cancel_stops_a_running_job_mid_denoise(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    srv = slow_server(make_server, tmp_path).start()
    submitted = httpx.post(f"{srv.url}/api/v3/google/imagen4-fast", json={"prompt": "a fox"},
                           timeout=30).json()["data"]
    running = wait_denoising(srv, submitted["id"])
    assert running["progress"]["total"] == SLOW_STEPS
    reply = httpx.post(f"{srv.url}/api/v3/predictions/{submitted['id']}/cancel", timeout=30)
    assert reply.status_code == 200 and reply.json()["code"] == 200
    ended = wait_terminal(srv, submitted["id"])
    assert ended["status"] == "cancelled" and ended["error"]["kind"] == "cancelled"
    assert running["progress"]["step"] <= ended["progress"]["step"] < SLOW_STEPS
    polled = httpx.get(submitted["urls"]["get"], timeout=30).json()["data"]
    assert (polled["status"], polled["code"], polled["outputs"]) == ("cancelled", 1405, [])
    assert srv.db("SELECT status FROM jobs") == [("cancelled",)]
    unknown = httpx.post(f"{srv.url}/api/v3/predictions/nope/cancel", timeout=30)
    assert unknown.status_code == 404 and unknown.json()["code"] == 404


def test_easel_jobs_cancel_from_the_cli(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    srv = slow_server(make_server, tmp_path).start()
    task = inference(deliveryMethod="async", width=64, height=64)
    assert srv.post([task]).status_code == 200
    wait_denoising(srv, task["taskUUID"])
    result = subprocess.run(
        [sys.executable, "-m", "easel.cli", "jobs", "cancel", task["taskUUID"],
         "--url", srv.url], capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert task["taskUUID"] in result.stdout
    assert wait_terminal(srv, task["taskUUID"])["status"] == "cancelled"
    error = srv.post([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]).json()
    assert error["errors"][0]["code"] == "taskCancelled"
    missing = subprocess.run(
        [sys.executable, "-m", "easel.cli", "jobs", "cancel", "no-such-job", "--url", srv.url],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert missing.returncode == 1 and "no job" in missing.stderr


def start_worker(srv: Server, log: Path) -> subprocess.Popen[bytes]:
    """A worker process on the server's store, its fake engine's steps a twentieth of a
    second."""
    return srv.worker(log, step_seconds=0.05)


def test_a_killed_worker_process_is_replaced_and_the_job_completes_once(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    srv = slow_server(make_server, tmp_path, steps=60, EASEL_LEASE_SECONDS=2)
    srv.command = ["-m", "tests.serve", "serve", "--no-worker"]
    srv.start()
    task = inference(deliveryMethod="async", width=64, height=64, numberResults=2)
    assert srv.post([task]).status_code == 200
    first = start_worker(srv, tmp_path / "worker1.log")
    try:
        view = wait_denoising(srv, task["taskUUID"])
        assert view["progress"]["total"] == 60
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert srv.db("SELECT status, attempts FROM jobs") == [("processing", 1)]
        second = start_worker(srv, tmp_path / "worker2.log")
        try:
            items = poll_until_done(srv, task["taskUUID"], timeout=180)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert len(items) == 2
    assert srv.db("SELECT status, attempts FROM jobs") == [("completed", 2)]
    for item in items:
        assert httpx.get(item["imageURL"], timeout=30).status_code == 200
