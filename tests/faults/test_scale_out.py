"""Faults of a scaled-out deployment, each on real services: PostgreSQL (Debian's server, in a
temp dir), an S3-compatible server (moto) and easel processes that share nothing but those two,
each with its own data dir, as on separate machines.

- a worker SIGKILLed mid-job: the other worker completes it, exactly once;
- PostgreSQL restarted during a burst of submissions: every acknowledged job completes, and
  while it is down the API answers 503 with Retry-After, never 500;
- an API process SIGKILLed while its client waits: the job completes and is polled, its image
  downloaded, through another API process;
- the object store down while jobs run: they go back to the queue and complete once it is back.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.cluster import Workers
from tests.edge.test_keys_and_limits import calls
from tests.postgres import PostgresServer, postgres_bin
from tests.s3 import S3Server
from tests.server.test_cancel_and_workers import slow_catalog, wait_denoising
from tests.server_harness import Server, inference, poll_until_done

# A job of a few seconds (the fake engine's steps a twentieth of a second each): long enough to
# kill its worker, or its object store, mid-way.
STEPS = 40
STEP_SECONDS = 0.05
FAKE_ENGINE = ["-m", "tests.serve", "--engine", "fake", "--step-seconds", str(STEP_SECONDS)]


def shared_by_every_process(
    postgres: PostgresServer, s3: S3Server, catalog: Path
) -> tuple[str, str, dict[str, Any]]:
    """A fresh database and bucket for the test, and the settings every process of it gets."""
    database, bucket = postgres.new_database(), s3.new_bucket()
    env = {"EASEL_DATABASE": database, "EASEL_CATALOG_FILE": str(catalog),
           "EASEL_STAND_IN": "tiny", "EASEL_STAND_IN_MAX_STEPS": STEPS,
           "EASEL_LEASE_SECONDS": 3, "EASEL_STORAGE_RETRY_SECONDS": 0.5,
           "EASEL_SECRET_KEY": "one-secret-for-every-process", **s3.env(bucket)}
    return database, bucket, env


def api_process(root: Path, env: dict[str, Any], worker: bool = False) -> Server:
    command = [*FAKE_ENGINE, "serve"] + ([] if worker else ["--no-worker"])
    return Server(root, small=False, command=command, **env)


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url.replace("postgresql:", "postgresql+psycopg:"))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return slow_catalog(tmp_path / "slow.toml", STEPS)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Workers]]:
    """Makes the test's pool of worker processes; they are stopped when the test ends."""
    made: list[Workers] = []

    def pool(env: dict[str, Any]) -> Workers:
        made.append(Workers(tmp_path, env, [*FAKE_ENGINE, "worker"]))
        return made[-1]

    yield pool
    for group in made:
        group.stop()


def test_a_worker_killed_mid_job_is_finished_by_another_exactly_once(
    postgres: PostgresServer, s3: S3Server, catalog: Path, tmp_path: Path,
    workers: Callable[[dict[str, Any]], Workers],
) -> None:
    database, bucket, env = shared_by_every_process(postgres, s3, catalog)
    api = api_process(tmp_path / "api", env).start(wait_ready=False)
    pool = workers(env)
    first, second = pool.start(), pool.start()
    try:
        task = inference(deliveryMethod="async", numberResults=2)
        assert api.post([task]).status_code == 200
        wait_denoising(api, task["taskUUID"], timeout=180)
        [(owner,)] = rows(database, "SELECT lease_owner FROM jobs")
        victim = next(p for p in (first, second) if f"-{p.pid}-" in owner)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        items = poll_until_done(api, task["taskUUID"], timeout=240)
        assert len(items) == 2
        assert rows(database, "SELECT status, attempts FROM jobs") == [("completed", 2)]
        [(new_owner,)] = rows(database, "SELECT lease_owner FROM jobs")
        assert new_owner != owner
        assert len(s3.keys(bucket)) == 2  # one object per image: the re-run overwrote its keys
        for item in items:
            assert httpx.get(item["imageURL"], timeout=30).status_code == 200
    finally:
        api.stop()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own: the test stops and restarts it."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL's server is not installed (Debian: postgresql)")
    server = PostgresServer(bin_dir).start()
    yield server
    server.close()


def test_a_postgres_restart_during_a_burst_loses_no_acknowledged_job(
    own_postgres: PostgresServer, s3: S3Server, tmp_path: Path,
    workers: Callable[[dict[str, Any]], Workers],
) -> None:
    quick = slow_catalog(tmp_path / "quick.toml", 2)
    database, _bucket, env = shared_by_every_process(own_postgres, s3, quick)
    env.update({"EASEL_STAND_IN_MAX_STEPS": 2, "EASEL_RATE_LIMIT_PER_SECOND": 1000,
                "EASEL_POLL_INTERVAL": 0.2})
    api = api_process(tmp_path / "api", env).start(wait_ready=False)
    pool = workers(env)
    pool.start()
    pool.wait_ready()
    acknowledged: list[str] = []
    refused: list[httpx.Response] = []
    unexpected: list[str] = []
    down, restarted = threading.Event(), threading.Event()

    def submit(i: int) -> None:
        if i == 20:
            own_postgres.stop()
            down.set()
        if i == 60:
            own_postgres.start()
            restarted.set()
        task = inference(deliveryMethod="async")
        try:
            reply = api.post([task], timeout=60)
        except httpx.HTTPError as exc:  # no answer: not acknowledged (and must not be lost
            unexpected.append(f"{i}: {exc!r}")  # either), but easel should always answer
            return
        if reply.status_code == 200:
            acknowledged.append(task["taskUUID"])
        elif reply.status_code == 503 and reply.headers.get("Retry-After"):
            refused.append(reply)
        else:
            unexpected.append(f"{i}: {reply.status_code} {reply.text[:300]}")
        if down.is_set() and not restarted.is_set():
            time.sleep(0.05)  # spread the outage's submissions over its whole length

    try:
        with ThreadPoolExecutor(max_workers=1) as ordered:  # in order: 20 before, 40 during
            list(ordered.map(submit, range(100)))
        assert unexpected == [], unexpected
        assert refused, "no submission was refused while the database was down"
        for reply in refused:
            error = reply.json()["errors"][0]
            assert "store" in error["message"], error
        assert len(acknowledged) >= 60  # the 20 before and the 40 after the restart, at least
        for task_uuid in acknowledged:
            poll_until_done(api, task_uuid, timeout=240)
        statuses = rows(database, "SELECT status, count(*) FROM jobs GROUP BY status")
        assert statuses == [("completed", len(acknowledged))], (statuses, pool.logs())
    finally:
        api.stop()


def test_while_postgres_is_down_polls_are_503_and_a_waiting_request_keeps_waiting(
    own_postgres: PostgresServer, s3: S3Server, catalog: Path, tmp_path: Path,
    workers: Callable[[dict[str, Any]], Workers],
) -> None:
    database, _bucket, env = shared_by_every_process(own_postgres, s3, catalog)
    api = api_process(tmp_path / "api", env)  # no worker yet: the jobs stay queued
    api.start(wait_ready=False)
    answer: list[Any] = []
    held = inference()  # synchronous: held open across the outage

    def wait_through_the_outage() -> None:
        try:
            answer.append(api.post([held], timeout=300))
        except httpx.HTTPError as exc:
            answer.append(exc)

    waiter = threading.Thread(target=wait_through_the_outage)
    try:
        task = inference(deliveryMethod="async")
        assert api.post([task]).status_code == 200
        waiter.start()
        deadline = time.monotonic() + 60
        while len(rows(database, "SELECT id FROM jobs")) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        own_postgres.stop()
        polled = api.post([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}])
        assert polled.status_code == 503 and polled.headers["Retry-After"], polled.text
        assert "job store" in polled.json()["errors"][0]["message"]
        job = httpx.get(f"{api.url}/easel/jobs/{task['taskUUID']}", timeout=30)
        assert job.status_code == 503 and job.headers["Retry-After"], job.text
        # Whether keys are needed cannot be read either: every dialect refuses, as a 503
        # (fail closed), not as a wrong key
        with httpx.Client(base_url=api.url, timeout=60) as client:
            assert set(calls(client, None).values()) == {503}
        # A worker started while the database is down waits for it instead of exiting.
        pool = workers(env)
        worker = pool.start()
        deadline = time.monotonic() + 120
        while "cannot be reached yet" not in pool.logs() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert worker.poll() is None, pool.logs()
        own_postgres.start()
        poll_until_done(api, task["taskUUID"], timeout=240)
        waiter.join(240)
        assert answer and isinstance(answer[0], httpx.Response), answer
        assert answer[0].status_code == 200, answer[0].text
        assert answer[0].json()["data"][0]["taskUUID"] == held["taskUUID"]
    finally:
        api.stop()
        waiter.join(10)


def test_an_api_process_killed_while_its_client_waits(
    postgres: PostgresServer, s3: S3Server, catalog: Path, tmp_path: Path,
    workers: Callable[[dict[str, Any]], Workers],
) -> None:
    database, _bucket, env = shared_by_every_process(postgres, s3, catalog)
    first = api_process(tmp_path / "api1", env).start(wait_ready=False)
    other = api_process(tmp_path / "api2", env).start(wait_ready=False)
    pool = workers(env)
    pool.start()
    task = inference()  # synchronous: the client holds its request open on `first`
    answer: list[Any] = []

    def wait_on_first() -> None:
        try:
            answer.append(first.post([task], timeout=240))
        except httpx.HTTPError as exc:
            answer.append(exc)

    waiter = threading.Thread(target=wait_on_first)
    waiter.start()
    try:
        wait_denoising(other, task["taskUUID"], timeout=180)
        first.kill()
        waiter.join(60)
        assert answer and isinstance(answer[0], httpx.HTTPError)  # its server died under it
        [item] = poll_until_done(other, task["taskUUID"], timeout=240)
        assert item["imageURL"].startswith(other.url)
        image = httpx.get(item["imageURL"], timeout=30)
        assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff"  # a JPEG
        assert rows(database, "SELECT status, attempts FROM jobs") == [("completed", 1)]
    finally:
        first.kill()
        other.stop()
        waiter.join(10)


def test_an_object_store_outage_sends_running_jobs_back_and_loses_none(
    postgres: PostgresServer, catalog: Path, tmp_path: Path,
) -> None:
    own = S3Server().start()  # this test stops its object store: not the shared one
    database, bucket, env = shared_by_every_process(postgres, own, catalog)
    srv = api_process(tmp_path / "api", env, worker=True)
    srv.start()
    try:
        tasks = [inference(deliveryMethod="async") for _ in range(3)]
        for task in tasks:
            assert srv.post([task]).status_code == 200
        wait_denoising(srv, tasks[0]["taskUUID"], timeout=180)
        own.stop()  # the first job's images cannot be stored: it goes back to the queue
        deadline = time.monotonic() + 120
        while "object store" not in srv.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "goes back to the queue" in srv.log.read_text()
        # Readiness probes the image store as submissions do: once it says so, they refuse.
        deadline = time.monotonic() + 30
        while httpx.get(f"{srv.url}/readyz", timeout=30).status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        refused = srv.post([inference(deliveryMethod="async")])
        assert refused.status_code == 503 and refused.headers["Retry-After"], refused.text
        assert "image store" in refused.json()["errors"][0]["message"]
        own.start()  # back, empty (moto keeps no state): its bucket re-created
        for task in tasks:
            [item] = poll_until_done(srv, task["taskUUID"], timeout=240)
            assert httpx.get(item["imageURL"], timeout=30).status_code == 200
        assert rows(database, "SELECT status, count(*) FROM jobs GROUP BY status") == [
            ("completed", 3)]
        assert len(own.keys(bucket)) == 3
    finally:
        srv.stop()
        own.stop()


def test_fair_order_holds_across_api_processes_and_workers(
    postgres: PostgresServer, s3: S3Server, tmp_path: Path,
    workers: Callable[[dict[str, Any]], Workers],
) -> None:
    """One key floods through one API process; another key's job, sent afterwards through the
    other API process, is the next job either of the two workers takes: the fair order is the
    store's, not a process's."""
    quick = slow_catalog(tmp_path / "quick.toml", 10)
    database, _bucket, env = shared_by_every_process(postgres, s3, quick)
    env.update({"EASEL_STAND_IN_MAX_STEPS": 10, "EASEL_BATCH_SIZE": 1,
                "EASEL_API_KEYS": "key-a,key-b", "EASEL_RATE_LIMIT_BURST": 1000})
    flooding = api_process(tmp_path / "api1", env).start(wait_ready=False)
    other = api_process(tmp_path / "api2", env).start(wait_ready=False)
    pool = workers(env)
    pool.start(), pool.start()
    pool.wait_ready()
    try:
        flood = [inference(deliveryMethod="async", positivePrompt=f"flood {i}")
                 for i in range(12)]
        reply = flooding.post(flood, headers={"Authorization": "Bearer key-a"})
        assert reply.status_code == 200, reply.text
        deadline = time.monotonic() + 120  # the workers have begun on the flood
        while rows(database, "SELECT count(*) FROM jobs WHERE started_at IS NOT NULL") == [(0,)]:
            assert time.monotonic() < deadline, "no worker took a job"
            time.sleep(0.05)
        victim = inference(deliveryMethod="async", positivePrompt="victim")
        assert other.post([victim], headers={"Authorization": "Bearer key-b"}).status_code == 200
        poll_until_done(other, victim["taskUUID"], timeout=120,
                        headers={"Authorization": "Bearer key-b"})
        [(sent, started)] = rows(database, "SELECT created_at, started_at FROM jobs "
                                           f"WHERE task_id = '{victim['taskUUID']}'")
        jumped = rows(database, "SELECT count(*) FROM jobs WHERE caller <> (SELECT caller FROM "
                                f"jobs WHERE task_id = '{victim['taskUUID']}') AND started_at "
                                f"> {sent} AND started_at < {started}")
        assert jumped[0][0] <= 2, jumped  # at most a claim per worker racing its insert
        for task in flood:  # (read once all have run: the order is the store's record)
            poll_until_done(flooding, task["taskUUID"], timeout=120,
                            headers={"Authorization": "Bearer key-a"})
        after = rows(database, f"SELECT count(*) FROM jobs WHERE started_at > {started}")
        assert after[0][0] >= 6, after  # most of the flood ran after the victim
    finally:
        flooding.stop()
        other.stop()
