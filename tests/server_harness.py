"""A real easel server in a subprocess on a free loopback port, with its own data directory.

A subprocess (not a thread) so tests can SIGKILL it mid-job and start it again on the same
data directory, exactly as a crash and a restart would happen in production.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

GEMINI_RATIOS = """
"1:1"  = [64, 64]
"2:3"  = [32, 48]
"3:2"  = [48, 32]
"3:4"  = [48, 64]
"4:3"  = [64, 48]
"4:5"  = [48, 64]
"5:4"  = [64, 48]
"9:16" = [32, 64]
"16:9" = [64, 32]
"21:9" = [80, 32]
"""
# Small sizes for a test-only catalog (the tiny stand-ins draw 64x64 in a few milliseconds),
# for every table: Imagen's, and the Gemini image models' ten and fourteen ratios.
SMALL_SIZES = """
[sizes]
"1:1"  = [64, 64]
"3:4"  = [48, 64]
"4:3"  = [64, 48]
"9:16" = [32, 64]
"16:9" = [64, 32]
""" + "\n[size_tables.gemini]" + GEMINI_RATIOS \
    + "\n[size_tables.gemini-wide]" + GEMINI_RATIOS + """\
"1:4"  = [16, 64]
"4:1"  = [64, 16]
"1:8"  = [16, 128]
"8:1"  = [128, 16]
"""

# easel-mini serves every tier whose weights are absent; the tests that do not judge its pictures
# run it at 4 steps (it samples 20 by default), so a stand-in image costs what a tiny one does.
QUICK_MINI = """
[backends.mini]
steps = 4
"""

MODELS_CACHE = Path(os.environ.get("EASEL_TEST_MODELS", "/tmp/easel-test-models"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`engine`: what draws (tests/serve.py): `fake` unless the pictures matter (`tiny`, the
    real diffusers engine on the stand-ins), `pictures`, `crash:MARKER`; `command` replaces the
    whole command (`easel serve` itself, for the tests of the command)."""

    def __init__(
        self, data_dir: Path, small: bool = True, command: list[str] | None = None,
        engine: str = "fake", step_seconds: float = 0.0, **env: Any
    ) -> None:
        steps = ["--step-seconds", str(step_seconds)] if step_seconds else []
        # what runs after `python`
        self.command = command or ["-m", "tests.serve", "--engine", engine, *steps, "serve"]
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {k: str(v) for k, v in env.items()}
        self.small = small
        self.overlay = SMALL_SIZES + QUICK_MINI  # what `small` writes as the catalog file
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1"

    def start(self, wait_ready: bool = True, wait_live: bool = True) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "EASEL_DATA_DIR": str(self.data_dir), **self.env}
        if self.small:
            catalog = self.data_dir / "catalog.toml"
            catalog.write_text(self.overlay)
            env["EASEL_CATALOG_FILE"] = str(catalog)
        _share_models(self.data_dir)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.command, "--port", str(self.port),
                 "--data-dir", str(self.data_dir)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        if wait_live:  # a margin: a busy 2-core machine can take long to import
            self.wait("/livez", 90)
        if wait_ready:
            self.wait("/readyz", 120)
        return self

    def wait(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{path} not 200 after {timeout}s: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def worker(
        self, log: Path, engine: str = "fake", step_seconds: float = 0.0, **env: Any
    ) -> subprocess.Popen[bytes]:
        """A worker process on this server's store (its settings, its data dir, its catalog),
        with the engine of tests/serve.py; its output goes to `log`."""
        steps = ["--step-seconds", str(step_seconds)] if step_seconds else []
        environment = {**os.environ, **self.env, "EASEL_DATA_DIR": str(self.data_dir),
                       **{k: str(v) for k, v in env.items()}}
        if self.small:  # the server's sizes
            environment["EASEL_CATALOG_FILE"] = str(self.data_dir / "catalog.toml")
        with open(log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "tests.serve", "--engine", engine, *steps, "worker",
                 "--data-dir", str(self.data_dir)],
                env=environment, stdout=out, stderr=subprocess.STDOUT)

    def db(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read the job store directly: what the server wrote, not what it says."""
        with sqlite3.connect(self.data_dir / "easel.db", timeout=10) as conn:
            return conn.execute(sql, args).fetchall()

    def post(self, tasks: Any, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 120)
        return httpx.post(self.url + "/v1", json=tasks, **kwargs)


def _share_models(data_dir: Path) -> None:
    """Point <data_dir>/models at one shared cache so tiny models are built once per run."""
    MODELS_CACHE.mkdir(parents=True, exist_ok=True)
    link = data_dir / "models"
    if not link.exists():
        link.symlink_to(MODELS_CACHE, target_is_directory=True)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server (small sizes) for tests that do not restart or reconfigure it."""
    srv = Server(tmp_path_factory.mktemp("easel-shared")).start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Servers a test starts itself (own data dir, own settings); stopped at the end."""
    started: list[Server] = []

    def make(
        name: str = "srv", small: bool = True, command: list[str] | None = None,
        engine: str = "fake", step_seconds: float = 0.0, **env: Any
    ) -> Server:
        srv = Server(tmp_path / name, small=small, command=command, engine=engine,
                     step_seconds=step_seconds, **env)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def new_uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def inference(**fields: Any) -> dict[str, Any]:
    """An imageInference task with small defaults; fields override."""
    task = {"taskType": "imageInference", "taskUUID": new_uuid(), "model": "google:2@3",
            "positivePrompt": "a red fox in snow", "width": 64, "height": 64}
    task.update(fields)
    return task


def poll_until_done(srv: Server, task_uuid: str, timeout: float = 120,
                    **kwargs: Any) -> list[dict[str, Any]]:
    """getResponse until every item is success; returns the final items. `kwargs` go with
    each poll (headers: a key)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = srv.post([{"taskType": "getResponse", "taskUUID": task_uuid}], **kwargs).json()
        if "errors" in body:
            raise AssertionError(body)
        items = body["data"]
        if items and all(item["status"] == "success" for item in items):
            return list(items)
        time.sleep(0.2)
    raise TimeoutError(task_uuid)
