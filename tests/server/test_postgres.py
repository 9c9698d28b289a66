"""Many processes on one PostgreSQL store: LISTEN/NOTIFY carries "work submitted" and "job
settled" between them, so with polling all but switched off (a 10-minute poll interval) an API
process still answers a synchronous request that a worker process ran."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from easel.runtime.build import relay_for
from easel.services.jobs.events import JobEvents
from easel.store import JobStore
from easel.store.notify import PgRelay
from tests.dialects.conftest import KEY
from tests.postgres import PostgresServer
from tests.server_harness import Server

AUTH = {"Authorization": f"Bearer {KEY}"}


def test_only_a_postgresql_store_has_a_relay() -> None:
    assert relay_for("sqlite:///jobs.db") is None
    assert isinstance(relay_for("postgresql://u@127.0.0.1:5/db"), PgRelay)
    assert isinstance(relay_for("postgres://u@127.0.0.1:5/db"), PgRelay)


async def test_an_event_in_one_process_wakes_the_waiters_of_another(
    postgres: PostgresServer,
) -> None:
    url = postgres.new_database()
    here, there = PgRelay(url), PgRelay(url)
    mine, theirs = JobEvents(here), JobEvents(there)
    mine.start()
    theirs.start()
    try:
        assert await asyncio.to_thread(there.listening.wait, 30)
        with theirs.watching("job-1") as settled:
            mine.job_changed("job-1", settled=True)
            await asyncio.wait_for(settled.wait(), 30)
        woke = asyncio.to_thread(theirs._work.wait, 30)
        theirs._work.clear()
        mine.work_submitted()
        assert await woke
    finally:
        mine.close()
        theirs.close()


@pytest.fixture
def shared_store(postgres: PostgresServer, tmp_path: Path) -> Iterator[dict[str, str]]:
    url = postgres.new_database()
    JobStore(url).create()
    yield {"EASEL_DATABASE": url, "EASEL_API_KEYS": KEY, "EASEL_POLL_INTERVAL": "600",
           "EASEL_STAND_IN": "tiny",
           "EASEL_SECRET_KEY": "one-secret-for-every-process"}


def test_api_processes_answer_what_a_worker_process_ran(
    shared_store: dict[str, str], tmp_path: Path
) -> None:
    # One machine: the processes share the data dir's images (object storage is for many).
    apis = [Server(tmp_path / "data", small=True,
                   command=["-m", "tests.serve", "serve", "--no-worker"],
                   **shared_store) for _ in range(2)]
    for api in apis:
        api.start(wait_ready=False)
    worker = apis[0].worker(tmp_path / "worker.log")
    try:
        for api, prompt in zip(apis, ("a red kite", "a blue boat"), strict=True):
            # Synchronous: the API process answers when it hears the job settled.
            reply = httpx.post(f"{api.url}/v1/images/generations", headers=AUTH, timeout=240,
                               json={"model": "google/imagen-4.0-fast-generate-001",
                                     "prompt": prompt, "response_format": "b64_json"})
            assert reply.status_code == 200, (reply.text, (tmp_path / "worker.log").read_text())
            assert len(base64.b64decode(reply.json()["data"][0]["b64_json"])) > 100
    finally:
        worker.terminate()
        assert worker.wait(60) == 0
        for api in apis:
            api.stop()
