"""`easel jobs` against a real server (list, show, cancel), and what `easel serve` says when it
starts. easel's own API itself is tested in-process (tests/edge/test_easel_api.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.server.test_cancel_and_workers import slow_server, wait_denoising, wait_terminal
from tests.server_harness import Server, free_port


def submit(srv: Server, headers: dict[str, str], **fields: Any) -> httpx.Response:
    body = {"model": "google/imagen4-fast", "prompt": "a red fox in snow", **fields}
    return httpx.post(f"{srv.url}/easel/jobs", json=body, headers=headers, timeout=60)


def test_easel_jobs_lists_shows_and_cancels_on_a_running_server(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    srv = slow_server(make_server, tmp_path).start()
    log = srv.log.read_text()
    assert f"playground at {srv.url}/" in log
    assert "API keys: not required (none configured): anyone who can reach" in log
    assert "tier fast: flux2-klein-4b, stand-in easel/tiny-flux2 (weights absent)" in log
    running = submit(srv, {}, prompt="a lighthouse at dusk").json()
    queued = submit(srv, {}, prompt="a second job").json()  # waits behind the first
    env = {**os.environ, "EASEL_URL": srv.url, "COLUMNS": "200"}

    def easel(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "easel.cli", "jobs", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    listed = easel("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == [queued["id"], running["id"]]
    table = easel("list").stdout
    assert running["id"] in table and "a lighthouse at dusk" in table and "a second job" in table
    waiting = easel("show", queued["id"]).stdout  # its place: next, or behind the first
    assert re.search(r"queue\s+(next|1 job ahead)", waiting), waiting
    cancelled = easel("cancel", queued["id"])
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout, cancelled.stderr

    # The running one, once it is denoising (its stream's cancel: tests/edge/test_easel_api.py).
    wait_denoising(srv, running["id"])
    stopped = easel("cancel", running["id"])  # prints the job once it has stopped
    assert stopped.returncode == 0 and "cancelled" in stopped.stdout, stopped.stdout
    wait_terminal(srv, running["id"])

    shown = easel("show", running["id"])
    assert "cancelled" in shown.stdout and "a lighthouse at dusk" in shown.stdout
    env["COLUMNS"] = "80"  # a terminal of 80 columns: nothing wider, the ids and states whole
    narrow = easel("list").stdout.splitlines()
    assert max(len(line) for line in narrow) <= 80 and "…" not in "".join(narrow[:3])
    assert any(line.split()[:2] == [queued["id"], "cancelled"] for line in narrow), narrow
    assert max(len(line) for line in easel("show", running["id"]).stdout.splitlines()) <= 80
    cancelled_only = json.loads(easel("list", "--status", "cancelled", "--json").stdout)
    assert {j["id"] for j in cancelled_only} == {running["id"], queued["id"]}
    assert json.loads(easel("list", "--status", "completed", "--json").stdout) == []
    missing = easel("show", "no-such-job")
    assert missing.returncode == 1 and "no job no-such-job" in missing.stderr
    bad = easel("list", "--status", "done")
    assert bad.returncode == 1 and "status 'done' is not one of" in bad.stderr

    # Without --url or EASEL_URL the commands find the server as `easel serve` found its port:
    # EASEL_PORT, or the settings file.
    port = httpx.URL(srv.url).port
    config = tmp_path / "easel.toml"
    config.write_text(f"port = {port}\n")
    bare = {k: v for k, v in env.items() if k not in ("EASEL_URL", "EASEL_PORT")}
    for found_by in ({"EASEL_PORT": str(port)}, {"EASEL_CONFIG": str(config)}):
        listed = subprocess.run([sys.executable, "-m", "easel.cli", "jobs", "list", "--json"],
                                env={**bare, **found_by}, capture_output=True, text=True,
                                timeout=60)
        assert listed.returncode == 0, (found_by, listed.stderr)
        assert len(json.loads(listed.stdout)) == 2


def test_easel_generate_goes_through_the_running_server(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    """With a server up, `easel generate` queues there (its loaded model; the job is in `easel
    jobs` and the playground) and writes the images; its errors still name the flags; a
    server named but not answering is an error, not a silent local run."""
    srv = make_server().start()
    out = tmp_path / "out"
    env = {**os.environ, "EASEL_URL": srv.url}

    def easel(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "easel.cli", "generate", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    made = easel("a red fox", "--model", "google:2@3", "-n", "2", "--seed", "5",
                 "--format", "png", "-o", str(out))
    assert made.returncode == 0, made.stderr
    files = sorted(out.glob("*.png"))
    assert [p.name.rsplit("-", 1)[1] for p in files] == ["5.png", "6.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in files)
    (job_id,) = [row[0] for row in srv.db("SELECT id FROM jobs WHERE dialect = 'easel'")]
    assert f"job {job_id} on {srv.url}" in made.stderr
    refused = easel("a red fox", "--model", "google:2@3", "-n", "99", "-o", str(out))
    assert refused.returncode == 2 and "-n:" in refused.stderr, refused.stderr
    env["EASEL_URL"] = f"http://127.0.0.1:{free_port()}"
    nowhere = easel("a red fox", "-o", str(out), "--url", env["EASEL_URL"])
    assert nowhere.returncode == 1 and "no easel server answers" in nowhere.stderr
