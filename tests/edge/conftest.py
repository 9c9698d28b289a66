"""The app in-process on the fake engine: every route driven through Starlette's test client
(HTTP and WebSockets, the lifespan run as `easel serve` runs it), the in-process worker on the
fake engine, a real SQLite store in the test's own directory, and a clock the test moves
instead of sleeping (key cache, storage probe, rate buckets). No subprocess, no torch."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from easel.domain.job import Job
from easel.runtime.build import Server, build_server
from easel.settings import Settings
from tests.fakes import FakeEngine
from tests.server.test_store import FakeClock
from tests.server_harness import SMALL_SIZES
from tests.wire import Call

KEY = "test-key"
HOST = "testserver"  # the test client's Host


@dataclass
class Edge:
    client: TestClient
    server: Server
    engine: FakeEngine
    clock: FakeClock  # the caches' (monotonic)
    settings: Settings
    wall: FakeClock  # the images' lifetimes (wall time)

    def send(self, call: Call) -> Any:
        return call.send(self.client)

    def runware(self, tasks: list[Any], key: str | None = KEY, **kwargs: Any) -> Any:
        """Runware's REST call: a list of tasks."""
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return self.client.post("/v1", json=tasks, headers={**headers,
                                                           **kwargs.pop("headers", {})},
                                **kwargs)

    def db(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read the job store directly: what the server wrote, not what it says."""
        with sqlite3.connect(self.settings.data_dir / "easel.db", timeout=10) as conn:
            return conn.execute(sql, args).fetchall()

    def settle(self, task_uuid: str) -> list[dict[str, Any]]:
        """A Runware task's items once its job has ended (its end waited for, not polled for;
        a task sent over a WebSocket may not be stored yet when this is called)."""
        deadline = time.monotonic() + 30
        while not (found := self.db("SELECT id FROM jobs WHERE task_id = ?", task_uuid)):
            assert time.monotonic() < deadline, f"task {task_uuid} was never stored"
            time.sleep(0.01)
        self.wait(found[0][0])
        reply = self.runware([{"taskType": "getResponse", "taskUUID": task_uuid}]).json()
        assert "errors" not in reply, reply
        return list(reply["data"])

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """The job once it has ended, woken by the worker's event (no polling loop here)."""
        jobs = self.server.runtime.jobs
        return self.client.portal.call(jobs.wait, job_id, timeout)


def edge_settings(root: Path, small: bool = True, **overrides: Any) -> Settings:
    """The settings of an edge app: its own data dir, one API key, the test client's Host; with
    `small`, the test catalog's small sizes (tests/server_harness.py)."""
    root.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "data_dir": root / "data", "preload_models": [], "api_keys": [KEY],
        "allowed_hosts": [HOST, "localhost", "127.0.0.1"], "poll_interval": 0.05,
    }
    if small:
        catalog = root / "catalog.toml"
        catalog.write_text(SMALL_SIZES)
        values["catalog_file"] = catalog
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_edge(tmp_path: Path) -> Iterator[Callable[..., Edge]]:
    """Apps a test starts itself, each with its own settings and data dir; stopped at the end."""
    started: list[Edge] = []

    def make(engine: FakeEngine | None = None, small: bool = True, **settings: Any) -> Edge:
        engine = engine or FakeEngine()
        clock, wall = FakeClock(), FakeClock(time.time())
        built = edge_settings(tmp_path / f"edge{len(started)}", small, **settings)
        server = build_server(built, lambda: engine, clock, wall)
        client = TestClient(server.app, base_url=f"http://{HOST}")
        client.__enter__()
        edge = Edge(client, server, engine, clock, built, wall)
        started.append(edge)
        return edge

    yield make
    for edge in started:
        edge.client.__exit__(None, None, None)


@pytest.fixture
def edge(make_edge: Callable[..., Edge]) -> Edge:
    return make_edge()
