"""The job store on real SQLite and on a real PostgreSQL server: leases, bounded attempts, one
terminal transition, cancel.

Time is a fake clock the test moves: a lease expires when the test says so, never because the
machine was busy (nothing here sleeps)."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from easel.domain.errors import ErrorKind
from easel.domain.job import JobStatus
from easel.domain.request import GenerationRequest
from easel.domain.submission import DeliverySettings
from easel.store import DeliveryStore, InsertResult, JobStore, NewJob, QueueRules, ReadyImage


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _store(url: str, clock: FakeClock | None = None) -> JobStore:
    store = JobStore(url, clock or FakeClock())
    store.create()
    return store


def _job(job_id: str, key: str = "k", n: int = 1, webhook: str | None = None) -> NewJob:
    request = GenerationRequest(model="google:2@3", prompt="a fox", width=64, height=64,
                                num_images=n)
    return NewJob(id=job_id, dialect="test", request=request, params_hash="h", caller="t",
                  delivery=DeliverySettings(webhook=webhook), echo={"mine": 1}, task_id=None,
                  batch_key=key, backend="easel/tiny-flux", stand_in_reason=None, cost=0.02,
                  image_ids=[f"{job_id}-img{i}" for i in range(n)], seeds=list(range(n)))


def test_insert_is_idempotent_by_id(database_url: str) -> None:
    store = _store(database_url)
    assert store.insert(_job("a")) is InsertResult.INSERTED
    assert store.insert(_job("a")) is InsertResult.EXISTS
    job = store.get("a")
    assert job is not None and job.status is JobStatus.QUEUED
    assert [i.image_id for i in job.images] == ["a-img0"]
    assert job.echo == {"mine": 1} and job.delivery == DeliverySettings()


def test_claim_groups_compatible_jobs_up_to_batch_size(database_url: str) -> None:
    clock = FakeClock()
    store = _store(database_url, clock)
    for job_id, key, n in [("a", "x", 2), ("b", "y", 1), ("c", "x", 2), ("d", "x", 1)]:
        store.insert(_job(job_id, key, n))
        clock.advance(0.01)
    claimed = store.claim("w1", max_images=4, lease_seconds=30, max_attempts=3)
    assert [j.id for j in claimed] == ["a", "c"]  # b is incompatible, d would exceed 4 images
    assert all(j.status is JobStatus.PROCESSING and j.attempts == 1 for j in claimed)
    assert [j.id for j in store.claim("w2", 4, 30, 3)] == ["b"]


def test_expired_lease_is_reclaimed_and_only_the_new_owner_completes(database_url: str) -> None:
    clock = FakeClock()
    store = _store(database_url, clock)
    store.insert(_job("a"))
    assert [j.id for j in store.claim("dead", 4, lease_seconds=30, max_attempts=3)] == ["a"]
    clock.advance(29)
    assert store.claim("live", 4, 30, 3) == []  # lease still valid
    clock.advance(2)
    again = store.claim("live", 4, 30, 3)
    assert [j.id for j in again] == ["a"] and again[0].attempts == 2
    ready = [ReadyImage("a-img0", "image/jpeg", 10, clock() + 60)]
    assert not store.complete("a", "dead", ready, "b1", 0.1)  # the old worker lost the job
    assert store.complete("a", "live", ready, "b2", 0.1)
    assert not store.complete("a", "live", ready, "b3", 0.1)  # one terminal transition only
    job = store.get("a")
    assert job is not None and job.status is JobStatus.COMPLETED and job.batch_id == "b2"
    assert job.images[0].ready


def test_heartbeat_keeps_the_lease(database_url: str) -> None:
    clock = FakeClock()
    store = _store(database_url, clock)
    store.insert(_job("a"))
    store.claim("w", 4, lease_seconds=20, max_attempts=3)
    for _ in range(4):
        clock.advance(10)
        assert store.heartbeat("w", ["a"], 20) == 1
    assert store.claim("other", 4, 30, 3) == []
    clock.advance(21)  # no heartbeat for longer than the lease: the job is claimable again
    assert [j.id for j in store.claim("other", 4, 30, 3)] == ["a"]


def test_attempts_are_bounded(database_url: str) -> None:
    clock = FakeClock()
    store = _store(database_url, clock)
    store.insert(_job("a"))
    for _ in range(3):
        assert store.claim("w", 4, lease_seconds=10, max_attempts=3)
        clock.advance(11)
    assert store.claim("w", 4, 30, 3) == []
    job = store.get("a")
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error is ErrorKind.WORKER_LOST and "3 times" in (job.error_message or "")


def test_release_returns_jobs_to_the_queue_without_spending_an_attempt(database_url: str) -> None:
    store = _store(database_url)
    store.insert(_job("a"))
    store.claim("w", 4, 30, 3)
    store.progress("w", ["a"], 13, 20)
    store.release(["a"], "w")
    job = store.get("a")
    assert job is not None and job.status is JobStatus.QUEUED and job.attempts == 0
    # The run given up is forgotten: a queued job shows no progress of it.
    assert (job.progress_step, job.progress_total) == (0, 0)


def test_cancel_a_queued_job_ends_it_with_one_terminal_webhook(database_url: str) -> None:
    store = _store(database_url)
    store.insert(_job("a", webhook="https://example.com/hook"))
    assert store.cancel("a", "cancelled by the caller") is JobStatus.CANCELLED
    job = store.get("a")
    assert job is not None and job.status is JobStatus.CANCELLED
    assert job.error is ErrorKind.CANCELLED
    assert store.claim("w", 4, 30, 3) == []  # never runs
    rows = DeliveryStore(store.engine).for_job("a")
    assert [(d.kind, d.event, d.image_id) for d in rows] == [("webhook", "cancelled", "")]
    assert store.cancel("a", "again") is JobStatus.CANCELLED  # idempotent
    assert store.cancel("nope", "x") is None


def test_cancel_a_running_job_asks_its_worker(database_url: str) -> None:
    store = _store(database_url)
    store.insert(_job("a"))
    store.insert(_job("b"))
    store.claim("w", 4, 30, 3)
    assert store.cancel("a", "x") is JobStatus.PROCESSING
    assert store.cancel_requested(["a", "b"]) == {"a"}
    assert not store.finish_cancelled("a", "someone-else", "x")
    assert store.finish_cancelled("a", "w", "cancelled by the caller")
    job = store.get("a")
    assert job is not None and job.status is JobStatus.CANCELLED
    ready = [ReadyImage("a-img0", "image/jpeg", 10, None)]
    assert not store.complete("a", "w", ready, "b1", 0.1)  # a cancelled job stays cancelled


def store_with_old_job(tmp_path: Path) -> Path:
    """A SQLite job store at the newest schema holding one job, "old"; its path."""
    path = tmp_path / "jobs.db"
    store = JobStore(f"sqlite:///{path}")
    store.create()
    store.insert(_job("old"))
    store.close()
    return path


def back_to_baseline(conn: sqlite3.Connection) -> None:
    """Take off what migrations 0002 and 0003 added (fair sharing, partial images, the LoRA
    allow-list)."""
    conn.execute("DROP TABLE loras")
    conn.execute("DROP INDEX ix_jobs_caller_status")
    conn.execute("DROP INDEX ix_jobs_fair_start")
    conn.execute("DROP TABLE fair_clock")
    for column in ("work", "fair_start", "fair_finish", "partials"):
        conn.execute(f"ALTER TABLE jobs DROP COLUMN {column}")


def test_a_database_of_the_previous_schema_is_upgraded(tmp_path: Path) -> None:
    """A data dir created before `caller` and `cancel_requested` existed keeps working."""
    path = store_with_old_job(tmp_path)
    with sqlite3.connect(path) as conn:  # the old schema: drop the new columns and index
        conn.execute("DROP TABLE alembic_version")  # and it predates migrations
        conn.execute("DROP INDEX ix_jobs_caller_created")
        back_to_baseline(conn)
        conn.execute("ALTER TABLE jobs DROP COLUMN caller")
        conn.execute("ALTER TABLE jobs DROP COLUMN cancel_requested")
        conn.execute("ALTER TABLE jobs DROP COLUMN task_id")
        conn.execute("UPDATE jobs SET options = ? WHERE id = 'old'",
                     ('{"webhook": "https://example.com/h", "ttl": 90, "outputType": ["URL"]}',))
    again = JobStore(f"sqlite:///{path}")
    again.create()
    job = again.get("old")
    assert job is not None and not job.cancel_requested
    assert job.delivery.webhook == "https://example.com/h" and job.delivery.ttl_seconds == 90
    assert job.echo == {"outputType": ["URL"], "ttl": 90}
    assert again.insert(_job("new")) is InsertResult.INSERTED
    with sqlite3.connect(path) as conn:
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(jobs)")}
    assert "ix_jobs_caller_created" in indexes


def test_a_callers_jobs_page_newest_first_even_when_created_in_the_same_instant(
    database_url: str,
) -> None:
    clock = FakeClock()
    store = _store(database_url, clock)
    for i in range(5):
        store.insert(_job(f"j{i}"))
        if i != 2:  # j2 and j3 share one created_at: the id orders them
            clock.advance(1)
    store.insert(NewJob(**{**_job("other").__dict__, "caller": "someone else"}))
    pages, after = [], None
    while page := store.list_for("t", 2, after=after):
        pages.append([job.id for job in page])
        after = page[-1].id
    assert pages == [["j4", "j2"], ["j3", "j1"], ["j0"]]
    assert [j.id for j in store.list_for("t", 10, (JobStatus.QUEUED,))] == [
        "j4", "j2", "j3", "j1", "j0"]
    assert store.list_for("t", 10, (JobStatus.COMPLETED,)) == []
    assert store.list_for("t", 10, after="other") == []  # another caller's id is no cursor


def test_the_queue_cap_is_checked_in_the_insert_itself(database_url: str) -> None:
    store = _store(database_url)
    results = [store.insert(_job(f"j{i}"), QueueRules(max_queued=3)) for i in range(5)]
    assert results == [InsertResult.INSERTED] * 3 + [InsertResult.QUEUE_FULL] * 2
    assert store.queued_count() == 3


def test_workers_claiming_at_once_take_each_job_exactly_once(database_url: str) -> None:
    """Four workers, each with its own connection pool, drain one queue at the same moment
    (PostgreSQL: SKIP LOCKED, so none waits on another's rows; SQLite: the re-checked UPDATE)."""
    store = _store(database_url)
    for i in range(60):
        store.insert(_job(f"j{i:02}", key=f"k{i % 3}"))
    start = threading.Barrier(4)

    def drain(owner: str) -> list[str]:
        mine = JobStore(database_url, store.clock)
        start.wait()
        taken: list[str] = []
        while batch := mine.claim(owner, max_images=4, lease_seconds=30, max_attempts=3):
            assert len({int(job.id[1:]) % 3 for job in batch}) == 1  # one batch_key
            taken += [job.id for job in batch]
        mine.close()
        return taken

    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(drain, ["w0", "w1", "w2", "w3"]))
    every = [job_id for taken in claims for job_id in taken]
    assert sorted(every) == [f"j{i:02}" for i in range(60)]  # each once, none left behind
    assert store.queued_count() == 0


def test_migrations_build_exactly_the_schema_the_code_declares(database_url: str) -> None:
    """Alembic's comparison of the migrated database with easel.store.schema finds nothing."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from easel.store import schema

    store = _store(database_url)
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
        assert MigrationContext.configure(conn).get_current_revision() is not None
    store.create()  # a second start changes nothing
    assert store.insert(_job("a")) is InsertResult.INSERTED


def test_a_data_dir_of_the_current_schema_from_before_migrations_is_stamped(
    tmp_path: Path,
) -> None:
    """A SQLite data dir that easel made before Alembic (the tables, no alembic_version)
    keeps its jobs and is brought under migrations."""
    import sqlalchemy as sa
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from easel.store import schema

    url = f"sqlite:///{tmp_path / 'easel.db'}"
    engine = sa.create_engine(url)
    schema.metadata.create_all(engine)  # what easel's create() did before
    engine.dispose()
    store = JobStore(url, FakeClock())
    assert store.insert(_job("kept")) is InsertResult.INSERTED  # written by the old easel
    with sqlite3.connect(tmp_path / "easel.db") as conn:
        assert "alembic_version" not in {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    store.create()
    job = store.get("kept")
    assert job is not None and job.status is JobStatus.QUEUED
    head = ScriptDirectory(str(Path(schema.__file__).parent / "migrations")).get_current_head()
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head


def test_health_probes_of_many_processes_at_once_never_collide(database_url: str) -> None:
    """Every submission probes the store with a write; on PostgreSQL a delete + insert of the
    probe row made concurrent probes fail with a duplicate key (a 503 for a healthy store)."""
    import threading

    stores = [_store(database_url) for _ in range(4)]  # one engine each, as separate processes
    failures: list[BaseException] = []

    def probe(store: JobStore) -> None:
        for _ in range(25):
            try:
                store.touch()
            except BaseException as exc:  # collected, asserted below
                failures.append(exc)

    threads = [threading.Thread(target=probe, args=(s,)) for s in stores for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
