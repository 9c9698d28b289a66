"""The job store: durable job rows and their images, on SQLAlchemy Core.

SQLite (WAL) by default; only portable SQL is used so PostgreSQL works with a different URL.
Every state change is a compare-and-set UPDATE (`... WHERE status = 'processing' AND
lease_owner = :me`), so a job whose lease expired and was re-run still has exactly one terminal
transition, whoever finishes first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError, OperationalError

from easel.domain.errors import ErrorKind
from easel.domain.generation import Operation
from easel.domain.job import TERMINAL_STATUSES, Job, JobImage, JobStatus
from easel.domain.lora import AppliedLora
from easel.domain.request import GenerationRequest, ImageFormat
from easel.domain.safety import EnhancementState, SafetyInput, Withheld
from easel.domain.submission import DeliverySettings
from easel.store import schema
from easel.store.outbox import delivery_settings, enqueue_for
from easel.store.schema import fair_clock, images, jobs

TERMINAL = tuple(status.value for status in TERMINAL_STATUSES)
UNFINISHED = (JobStatus.QUEUED.value, JobStatus.PROCESSING.value)
STARTUP_RETRY_SECONDS = 2.0
STARTUP_WAIT_SECONDS = 120.0  # a process started beside its database waits this long for it

log = logging.getLogger(__name__)


class InsertResult(Enum):
    INSERTED = "inserted"
    EXISTS = "exists"
    QUEUE_FULL = "queue_full"
    CALLER_JOBS = "caller_jobs"  # the caller's own unfinished jobs are at their cap
    CALLER_WORK = "caller_work"  # the caller's own unfinished work units are at their cap


@dataclass(frozen=True)
class QueueRules:
    """What an insert checks, and the caller's share of the GPU."""

    max_queued: int = 0  # queued jobs in all; 0: no cap
    max_caller_jobs: int = 0  # a caller's unfinished (queued or running) jobs; 0: no cap
    # A caller's unfinished (queued or running) work units; 0: no cap. A caller with nothing
    # unfinished may always submit one job, however large: the cap bounds a backlog, not a job.
    max_caller_work: float = 0.0
    weight: float = 1.0  # the caller's share against other callers (fair queueing)


@dataclass(frozen=True)
class NewJob:
    """A validated submission with its image ids and seeds already fixed."""

    id: str
    dialect: str
    request: GenerationRequest
    params_hash: str
    caller: str
    delivery: DeliverySettings
    echo: dict[str, Any]
    task_id: str | None
    batch_key: str
    backend: str
    stand_in_reason: str | None
    cost: float
    image_ids: Sequence[str]
    seeds: Sequence[int]
    created_at: float | None = None  # unix seconds; None: the store's clock at insert
    work: float = 0.0  # work units (Plan.work): what the scheduler charges the caller


@dataclass(frozen=True)
class QueuePlace:
    """Where a queued job stands: jobs ahead of it, and the work units before its turn."""

    ahead: int
    work_ahead: float
    workers: int  # workers running jobs now (at least 1): they share the work ahead


@dataclass(frozen=True)
class StoredImage:
    """An image row with what serving it needs."""

    image: JobImage
    job_id: str
    ext: str
    deleted: bool


@dataclass(frozen=True)
class ReadyImage:
    """A finished image: stored, or withheld by the safety check (then nothing was stored)."""

    image_id: str
    mime: str
    size_bytes: int
    expires_at: float | None
    nsfw: bool = False
    withheld: Withheld | None = None
    scores: dict[str, float] | None = None  # the detector's scores; None: not checked


def with_driver(url: str) -> sa.URL:
    """`url` with the driver easel ships: a plain `postgresql://` (or Heroku's `postgres://`)
    means psycopg 3, not SQLAlchemy's default psycopg2, which easel does not install."""
    parsed = sa.make_url(url.replace("postgres://", "postgresql://", 1)
                         if url.startswith("postgres://") else url)
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine; SQLite gets WAL and a busy timeout so threads wait, not fail."""
    if not url.startswith("sqlite"):
        return sa.create_engine(with_driver(url), pool_pre_ping=True)
    # pool_recycle: a pooled SQLite connection was seen to go on reading a snapshot from
    # before another process's commit (`easel keys adopt` while the server ran), even through
    # BEGIN and COMMIT. A connection opened over a second ago is replaced when it is next
    # taken, so another process's writes (keys, the LoRA allow-list) are read within a second.
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                              pool_recycle=1)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives process crashes
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


class JobStore:
    """Synchronous by design: callers on the event loop wrap calls in asyncio.to_thread."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        self.engine = make_engine(url)
        self.clock = clock  # tests pass a fake clock: leases expire when the test says so
        self._insert_lock = threading.Lock()
        # Jobs this store object failed for running out of attempts (claims do it), not yet
        # taken by the worker's metrics (take_given_up).
        self._given_up = 0

    def create(self, wait_seconds: float = 0.0) -> None:
        """Create or migrate the schema. A database that cannot be reached yet (starting, or
        restarting beside this process) is retried every few seconds for `wait_seconds`."""
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                schema.create(self.engine)
                return
            except OperationalError as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("the job store cannot be reached yet (%s); retrying",
                            str(exc.orig).strip().splitlines()[0] if exc.orig else exc)
                time.sleep(STARTUP_RETRY_SECONDS)

    def close(self) -> None:
        self.engine.dispose()

    def touch(self) -> None:
        """Write one row: raises when the store cannot be written (disk full, read-only)."""
        # An UPDATE of one row, so probes of many processes at once wait for each other's row
        # lock instead of colliding on a primary key (delete + insert did, on PostgreSQL).
        with self.engine.begin() as conn:
            updated = conn.execute(schema.health.update().where(schema.health.c.id == 1)
                                   .values(at=self.clock()))
            if updated.rowcount:
                return
        try:
            with self.engine.begin() as conn:
                conn.execute(schema.health.insert().values(id=1, at=self.clock()))
        except IntegrityError:
            pass  # another process wrote the first row just now: the store takes writes

    # -- submission and reads ---------------------------------------------------------------

    def insert(
        self, new: NewJob, rules: QueueRules = QueueRules(), now: float | None = None
    ) -> InsertResult:
        """Insert a queued job, unless one with its id exists (EXISTS: the caller compares
        parameters), `rules.max_queued` jobs are already queued (QUEUE_FULL) or the caller's
        unfinished jobs or work would pass its cap (CALLER_JOBS, CALLER_WORK). Counting, tagging and
        inserting are one step: no batch of concurrent submissions can pass a cap or share a
        tag."""
        now = self.clock() if now is None else now
        ext = new.request.output_format.extension
        with self._insert_lock:  # one process's submissions, one at a time
            try:
                with self.engine.begin() as conn:
                    _one_inserter_at_a_time(conn)
                    if rules.max_queued > 0 and _queued(conn) >= rules.max_queued:
                        return InsertResult.QUEUE_FULL
                    mine = _unfinished(conn, new.caller)
                    refused = _over_caller_caps(mine, new.work, rules)
                    if refused is not None:
                        return refused
                    # Start-time fair queueing: a caller's job starts where its previous one
                    # finishes in virtual time, or at the virtual time now if it is idle; so a
                    # caller with a backlog queues behind itself, never in front of others.
                    start = max(_virtual_time(conn), mine.last_finish)
                    conn.execute(jobs.insert().values(
                        id=new.id, dialect=new.dialect, request=request_to_json(new.request),
                        params_hash=new.params_hash, caller=new.caller, task_id=new.task_id,
                        options={"delivery": new.delivery.to_json(), "echo": new.echo},
                        status=JobStatus.QUEUED.value, batch_key=new.batch_key,
                        num_images=len(new.image_ids), backend=new.backend,
                        stand_in_reason=new.stand_in_reason, cost=new.cost, attempts=0,
                        created_at=now if new.created_at is None else new.created_at,
                        updated_at=now, progress_step=0, progress_total=0,
                        engine_seconds=0.0, work=new.work, fair_start=start,
                        fair_finish=start + new.work / max(rules.weight, 1e-6),
                    ))
                    conn.execute(images.insert(), [
                        {"image_id": image_id, "job_id": new.id, "idx": index, "seed": seed,
                         "ext": ext, "ready": False, "nsfw": False, "deleted": False}
                        for index, (image_id, seed) in enumerate(
                            zip(new.image_ids, new.seeds, strict=True)
                        )
                    ])
            except IntegrityError:
                return InsertResult.EXISTS
        return InsertResult.INSERTED

    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            rows = _load(conn, [job_id])
        return rows[0][0] if rows else None

    def get_with_hash(self, job_id: str) -> tuple[Job, str] | None:
        with self.engine.connect() as conn:
            rows = _load(conn, [job_id])
        return rows[0] if rows else None

    def latest_twin(self, caller: str, digest: str, since: float) -> Job | None:
        """The caller's newest job created at or after `since` with these parameters that has
        not failed or been cancelled: what a client's automatic retry of a request was for."""
        dead = [JobStatus.FAILED.value, JobStatus.CANCELLED.value]
        query = (sa.select(jobs.c.id)
                 .where(jobs.c.caller == caller, jobs.c.created_at >= since,
                        jobs.c.params_hash == digest, jobs.c.status.not_in(dead))
                 .order_by(jobs.c.created_at.desc()).limit(1))
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
            return _load(conn, [found])[0][0] if found is not None else None

    def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        with self.engine.connect() as conn:
            return [job for job, _ in _load(conn, job_ids)]

    def list_for(
        self, caller: str, limit: int, statuses: Sequence[JobStatus] = (),
        after: str | None = None,
    ) -> list[Job]:
        """A caller's jobs, newest first: at most `limit`, only `statuses` when given, and only
        those listed after the job `after` (the last of the previous page)."""
        query = sa.select(jobs.c.id).where(jobs.c.caller == caller)
        if statuses:
            query = query.where(jobs.c.status.in_([s.value for s in statuses]))
        order = (jobs.c.created_at.desc(), jobs.c.id)
        with self.engine.connect() as conn:
            if after is not None:
                cursor = conn.execute(sa.select(jobs.c.created_at).where(
                    jobs.c.id == after, jobs.c.caller == caller)).scalar()
                if cursor is None:
                    return []
                query = query.where(sa.or_(
                    jobs.c.created_at < cursor,
                    sa.and_(jobs.c.created_at == cursor, jobs.c.id > after)))
            ids = [row[0] for row in conn.execute(query.order_by(*order).limit(limit))]
            return [job for job, _ in _load(conn, ids)]

    def image(self, image_id: str) -> StoredImage | None:
        with self.engine.connect() as conn:
            row = conn.execute(images.select().where(images.c.image_id == image_id)).mappings()
            found = row.first()
        if found is None:
            return None
        return StoredImage(_image(found), found["job_id"], found["ext"], bool(found["deleted"]))

    def queued_count(self) -> int:
        with self.engine.connect() as conn:
            return _queued(conn)

    def queue_place(self, job_id: str) -> QueuePlace | None:
        """Where a queued job stands: the queued jobs ahead of it in fair order, and their
        work plus what is left of the running jobs'. None when the job is not queued."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs.c.fair_start, jobs.c.created_at, jobs.c.id)
                               .where(jobs.c.id == job_id,
                                      jobs.c.status == JobStatus.QUEUED.value)).first()
            if row is None:
                return None
            start, created, ident = row
            ahead = sa.or_(jobs.c.fair_start < start, sa.and_(
                jobs.c.fair_start == start, sa.or_(jobs.c.created_at < created, sa.and_(
                    jobs.c.created_at == created, jobs.c.id < ident))))
            count, queued_work = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(jobs.c.work), 0.0))
                .where(jobs.c.status == JobStatus.QUEUED.value, ahead)).one()
            left = sa.case((jobs.c.progress_total > 0, 1.0 - sa.cast(jobs.c.progress_step,
                                                                     sa.Float)
                            / jobs.c.progress_total), else_=1.0)
            # Running: leases still held (a dead worker's job is queued work again, from step
            # 0, and its worker is no longer one that shares the work).
            running, workers = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(jobs.c.work * left), 0.0),
                          sa.func.count(sa.distinct(jobs.c.lease_owner)))
                .where(jobs.c.status == JobStatus.PROCESSING.value,
                       jobs.c.lease_expires_at >= self.clock())).one()
        return QueuePlace(int(count), float(queued_work) + float(running or 0.0),
                          max(1, int(workers)))

    def seconds_per_work(self, recent: int = 50) -> float | None:
        """What a work unit has taken here lately: engine seconds over work units of the
        latest completed batches (a batch's seconds once, however many jobs shared it). None
        before any job has completed."""
        with self.engine.connect() as conn:  # the newest jobs, by the created_at index
            rows = conn.execute(
                sa.select(jobs.c.batch_id, jobs.c.engine_seconds, jobs.c.work)
                .where(jobs.c.status == JobStatus.COMPLETED.value, jobs.c.batch_id.is_not(None),
                       jobs.c.work > 0)
                .order_by(jobs.c.created_at.desc()).limit(recent)).all()
        seconds: dict[str, float] = {}
        work = 0.0
        for batch_id, engine_seconds, units in rows:
            seconds[batch_id] = float(engine_seconds)
            work += float(units)
        if not seconds or work <= 0:
            return None
        return sum(seconds.values()) / work

    def unfinished_work(self, caller: str) -> float:
        """The work units of the caller's queued and running jobs."""
        with self.engine.connect() as conn:
            return _unfinished(conn, caller).work

    def keyless_count(self) -> int:
        """Jobs made while no key was needed: owned by the address they came from."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(jobs)
                                    .where(jobs.c.caller.like("ip:%"))).scalar() or 0)

    def hand_keyless_jobs_to(self, principal: str) -> int:
        """Give every job made without a key to `principal` (a key's first owner keeps seeing
        the jobs made before keys were needed); how many."""
        with self.engine.begin() as conn:
            return int(conn.execute(jobs.update().where(jobs.c.caller.like("ip:%"))
                                    .values(caller=principal)).rowcount)

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)
            ).all()
        return {status: int(count) for status, count in rows}

    # -- the worker's side --------------------------------------------------------------------

    def claim(
        self, owner: str, max_images: int, lease_seconds: float, max_attempts: int,
        prefer: frozenset[str] = frozenset(),
    ) -> list[Job]:
        """Take the next job in fair order and compatible ones (same batch_key) up to
        max_images. With `prefer` (the backends this worker has loaded), the first job in fair
        order for one of them leads instead: the worker decides how long it may prefer them.

        Claimable: queued, or processing with an expired lease (its worker died). A job that has
        used up its attempts is failed here instead of being run again.
        """
        now = self.clock()
        if self.engine.dialect.name == "postgresql":
            return self._claim_skipping_locked(owner, max_images, lease_seconds, max_attempts,
                                               prefer, now)
        with self.engine.connect() as conn:
            candidates = conn.execute(_candidates(now)).mappings().all()
        with self.engine.begin() as conn:
            chosen, frontier = self._choose(conn, candidates, max_images, max_attempts, prefer,
                                            now)
        # SQLite: a transaction that reads and then writes may fail where another writer came
        # between, so the claim is a second transaction, an UPDATE that re-checks claimability.
        with self.engine.begin() as conn:
            claimed = _take_all(conn, chosen, owner, lease_seconds, now, frontier)
        return self.get_many(claimed)

    def _claim_skipping_locked(
        self, owner: str, max_images: int, lease_seconds: float, max_attempts: int,
        prefer: frozenset[str], now: float,
    ) -> list[Job]:
        """PostgreSQL: one transaction locks the candidates it reads, skipping rows another
        worker has locked, so workers claiming at once take different jobs without waiting."""
        with self.engine.begin() as conn:
            candidates = conn.execute(
                _candidates(now).with_for_update(skip_locked=True)).mappings().all()
            chosen, frontier = self._choose(conn, candidates, max_images, max_attempts, prefer,
                                            now)
            claimed = _take_all(conn, chosen, owner, lease_seconds, now, frontier)
        return self.get_many(claimed)

    def _choose(
        self, conn: Connection, candidates: Sequence[RowMapping], max_images: int,
        max_attempts: int, prefer: frozenset[str], now: float,
    ) -> tuple[list[str], float]:
        """The jobs of one engine call (the leader, then compatible jobs in fair order while
        they fit) and the start tag of the first job in fair order: where virtual time moves.
        Not a batch-mate's or a preferred leader's tag: that would move every caller's queued
        jobs into the past, behind which a new caller would wait."""
        runnable = []
        for row in candidates:
            if row["attempts"] >= max_attempts:
                self._give_up(conn, row["id"], row["attempts"], now)
            else:
                runnable.append(row)
        if not runnable:
            return [], 0.0
        frontier = float(runnable[0]["fair_start"])
        leader = _leader(runnable, prefer)
        chosen = [leader["id"]]
        if leader["attempts"] > 0:  # an interrupted job may be poison: it never shares a call
            return chosen, frontier
        total = leader["num_images"]
        for row in runnable:
            if row["id"] == leader["id"] or row["attempts"] > 0:
                continue
            if row["batch_key"] == leader["batch_key"] and \
                    total + row["num_images"] <= max_images:
                total += row["num_images"]
                chosen.append(row["id"])
        return chosen, frontier

    def _give_up(self, conn: Connection, job_id: str, attempts: int, now: float) -> None:
        result = conn.execute(
            jobs.update().where(jobs.c.id == job_id, _claimable(now)).values(
                status=JobStatus.FAILED.value, error_code=ErrorKind.WORKER_LOST.value,
                error_message=f"the job was interrupted {attempts} times (its worker crashed "
                "or lost its lease); giving up",
                finished_at=now, updated_at=now, lease_owner=None,
            )
        )
        if result.rowcount == 1:
            self._terminal(conn, job_id, now)
            self._given_up += 1
            log.warning("job %s failed: %s: interrupted %d times", job_id,
                        ErrorKind.WORKER_LOST.value, attempts,
                        extra={"job_id": job_id, "error_kind": ErrorKind.WORKER_LOST.value})

    def take_given_up(self) -> int:
        """How many jobs claims failed for running out of attempts since the last call."""
        taken, self._given_up = self._given_up, 0
        return taken

    def heartbeat(self, owner: str, job_ids: Iterable[str], lease_seconds: float) -> int:
        ids = list(job_ids)
        if not ids:
            return 0
        now = self.clock()
        with self.engine.begin() as conn:
            result = conn.execute(
                jobs.update()
                .where(jobs.c.id.in_(ids), jobs.c.lease_owner == owner,
                       jobs.c.status == JobStatus.PROCESSING.value)
                .values(lease_expires_at=now + lease_seconds, updated_at=now)
            )
        return int(result.rowcount)

    def partials_stored(self, job_id: str, owner: str, rounds: int) -> None:
        """`rounds` rounds of the job's partial images are in the blob store now."""
        with self.engine.begin() as conn:
            conn.execute(jobs.update()
                         .where(jobs.c.id == job_id, jobs.c.lease_owner == owner,
                                jobs.c.status == JobStatus.PROCESSING.value)
                         .values(partials=rounds, updated_at=self.clock()))

    def progress(self, owner: str, job_ids: Iterable[str], step: int, total: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                jobs.update()
                .where(jobs.c.id.in_(list(job_ids)), jobs.c.lease_owner == owner,
                       jobs.c.status == JobStatus.PROCESSING.value)
                .values(progress_step=step, progress_total=total, updated_at=self.clock())
            )

    def complete(
        self,
        job_id: str,
        owner: str,
        ready: Sequence[ReadyImage],
        batch_id: str,
        engine_seconds: float,
    ) -> bool:
        """The one terminal transition of a successful job; False if this worker lost it.
        Images the safety check withheld are not billed: the cost keeps the delivered share."""
        now = self.clock()
        withheld = sum(1 for image in ready if image.withheld is not None)
        billed = {"cost": jobs.c.cost * ((len(ready) - withheld) / len(ready))} if withheld else {}
        with self.engine.begin() as conn:
            result = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == JobStatus.PROCESSING.value,
                       jobs.c.lease_owner == owner)
                .values(status=JobStatus.COMPLETED.value, finished_at=now, updated_at=now,
                        batch_id=batch_id, engine_seconds=engine_seconds,
                        progress_step=jobs.c.progress_total, lease_owner=None, **billed)
            )
            if result.rowcount != 1:
                conn.rollback()
                return False
            for image in ready:
                conn.execute(
                    images.update().where(images.c.image_id == image.image_id).values(
                        ready=True, mime=image.mime, size_bytes=image.size_bytes,
                        expires_at=image.expires_at, nsfw=image.nsfw,
                        withheld=image.withheld.value if image.withheld else None,
                        safety_scores=image.scores,
                    )
                )
            self._terminal(conn, job_id, now)
        return True

    def fail(self, job_id: str, owner: str | None, kind: ErrorKind, message: str) -> bool:
        now = self.clock()
        where = [jobs.c.id == job_id, jobs.c.status.not_in(TERMINAL)]
        if owner is not None:
            where.append(jobs.c.lease_owner == owner)
        with self.engine.begin() as conn:
            result = conn.execute(
                jobs.update().where(*where).values(
                    status=JobStatus.FAILED.value, error_code=kind.value, error_message=message,
                    finished_at=now, updated_at=now, lease_owner=None,
                )
            )
            if result.rowcount == 1:
                self._terminal(conn, job_id, now)
        return result.rowcount == 1

    @staticmethod
    def _terminal(conn: Connection, job_id: str, now: float) -> None:
        """In the terminal transaction: owed webhooks and uploads join the outbox atomically."""
        enqueue_for(conn, job_id, now)

    # -- cancel -------------------------------------------------------------------------------

    def cancel(self, job_id: str, message: str) -> JobStatus | None:
        """A queued job ends cancelled at once; a running one is asked to stop (its worker
        ends it at the next denoising step). Returns the status after the call, None if no
        such job. A terminal job is left as it is."""
        now = self.clock()
        with self.engine.begin() as conn:
            queued = conn.execute(
                jobs.update().where(jobs.c.id == job_id, jobs.c.status == JobStatus.QUEUED.value)
                .values(status=JobStatus.CANCELLED.value, error_code=ErrorKind.CANCELLED.value,
                        error_message=message, finished_at=now, updated_at=now,
                        cancel_requested=True)
            )
            if queued.rowcount == 1:
                self._terminal(conn, job_id, now)
                return JobStatus.CANCELLED
            conn.execute(
                jobs.update().where(jobs.c.id == job_id,
                                    jobs.c.status == JobStatus.PROCESSING.value)
                .values(cancel_requested=True, updated_at=now)
            )
            status = conn.execute(sa.select(jobs.c.status).where(jobs.c.id == job_id)).scalar()
        return None if status is None else JobStatus(status)

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these running jobs were asked to stop (the worker asks at every step)."""
        if not job_ids:
            return set()
        with self.engine.connect() as conn:
            return set(conn.execute(
                sa.select(jobs.c.id).where(jobs.c.id.in_(list(job_ids)),
                                           jobs.c.cancel_requested.is_(True))
            ).scalars())

    def finish_cancelled(self, job_id: str, owner: str, message: str) -> bool:
        """The one terminal transition of a running job that was cancelled."""
        now = self.clock()
        with self.engine.begin() as conn:
            result = conn.execute(
                jobs.update().where(jobs.c.id == job_id, jobs.c.lease_owner == owner,
                                    jobs.c.status == JobStatus.PROCESSING.value)
                .values(status=JobStatus.CANCELLED.value, error_code=ErrorKind.CANCELLED.value,
                        error_message=message, finished_at=now, updated_at=now, lease_owner=None)
            )
            if result.rowcount == 1:
                self._terminal(conn, job_id, now)
        return result.rowcount == 1

    def release(self, job_ids: Iterable[str], owner: str) -> None:
        """Hand unfinished jobs back to the queue (graceful shutdown, a full disk): no attempt is
        lost, and the progress of the run given up is forgotten (it starts again)."""
        with self.engine.begin() as conn:
            conn.execute(
                jobs.update()
                .where(jobs.c.id.in_(list(job_ids)), jobs.c.lease_owner == owner,
                       jobs.c.status == JobStatus.PROCESSING.value)
                .values(status=JobStatus.QUEUED.value, lease_owner=None, lease_expires_at=None,
                        attempts=jobs.c.attempts - 1, progress_step=0, progress_total=0,
                        updated_at=self.clock())
            )

    # -- the sweeper's side -------------------------------------------------------------------

    def expired_images(self, now: float, limit: int = 500) -> list[tuple[str, str, int]]:
        """(image id, extension, rounds of partial images its job kept) of images past their
        lifetime and not yet deleted."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(images.c.image_id, images.c.ext, jobs.c.partials)
                .join(jobs, jobs.c.id == images.c.job_id)
                .where(images.c.ready.is_(True), images.c.deleted.is_(False),
                       images.c.expires_at < now)
                .limit(limit)
            ).all()
        return [(image_id, ext, int(partials)) for image_id, ext, partials in rows]

    def mark_deleted(self, image_ids: Sequence[str]) -> None:
        if image_ids:
            with self.engine.begin() as conn:
                conn.execute(
                    images.update().where(images.c.image_id.in_(list(image_ids)))
                    .values(deleted=True)
                )


def _queued(conn: Connection) -> int:
    count = conn.execute(
        sa.select(sa.func.count()).select_from(jobs).where(jobs.c.status == JobStatus.QUEUED.value)
    ).scalar()
    return int(count or 0)


def _one_inserter_at_a_time(conn: Connection) -> None:
    """Every process's inserts, one at a time, so the counts an insert checks cannot change
    before it commits. PostgreSQL: an advisory lock. SQLite: a write first (the driver begins
    its transaction at the first write, not the first read), which takes the one writer lock
    that the other processes then wait for."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7218532)"))
    else:
        conn.execute(fair_clock.update().where(fair_clock.c.id == 1)
                     .values(virtual=fair_clock.c.virtual))


@dataclass(frozen=True)
class _Unfinished:
    jobs: int
    work: float
    last_finish: float  # the latest finish tag among them: where the caller's next job starts


def _unfinished(conn: Connection, caller: str) -> _Unfinished:
    """The caller's queued and running jobs: how many, their work units, the last finish tag."""
    count, work, last = conn.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(jobs.c.work), 0.0),
                  sa.func.coalesce(sa.func.max(jobs.c.fair_finish), 0.0))
        .where(jobs.c.caller == caller, jobs.c.status.in_(UNFINISHED))
    ).one()
    return _Unfinished(int(count), float(work), float(last))


def _over_caller_caps(mine: _Unfinished, work: float, rules: QueueRules) -> InsertResult | None:
    """Which of the caller's caps one more job of `work` units would pass; None: neither.
    A caller with nothing unfinished always gets one job in, however large."""
    if mine.jobs == 0:
        return None
    if rules.max_caller_jobs > 0 and mine.jobs >= rules.max_caller_jobs:
        return InsertResult.CALLER_JOBS
    if rules.max_caller_work > 0 and mine.work + work > rules.max_caller_work:
        return InsertResult.CALLER_WORK
    return None


def _virtual_time(conn: Connection) -> float:
    found = conn.execute(sa.select(fair_clock.c.virtual).where(fair_clock.c.id == 1)).scalar()
    return float(found or 0.0)


def _advance_virtual_time(conn: Connection, start: float) -> None:
    """The virtual time moves to `start`, the start tag of the first job in fair order when a
    worker takes jobs (never back)."""
    moved = conn.execute(fair_clock.update().where(fair_clock.c.id == 1)
                         .values(virtual=sa.func.max(fair_clock.c.virtual, start)
                                 if conn.dialect.name == "sqlite"
                                 else sa.func.greatest(fair_clock.c.virtual, start)))
    if moved.rowcount == 0:
        conn.execute(fair_clock.insert().values(id=1, virtual=start))


def _candidates(now: float) -> sa.Select[Any]:
    """The claimable jobs in fair order (start tag, then age), enough to fill a batch from."""
    return (sa.select(jobs.c.id, jobs.c.batch_key, jobs.c.num_images, jobs.c.attempts,
                      jobs.c.backend, jobs.c.fair_start)
            .where(_claimable(now))
            .order_by(jobs.c.fair_start, jobs.c.created_at, jobs.c.id).limit(200))


def _leader(runnable: Sequence[RowMapping], prefer: frozenset[str]) -> RowMapping:
    """The job an engine call is built around: the first in fair order, or the first for a
    loaded backend when the worker prefers those (a model load costs more than a batch)."""
    if prefer and runnable[0]["backend"] not in prefer:
        for row in runnable:
            if row["backend"] in prefer:
                return row
    return runnable[0]


def _take_all(conn: Connection, chosen: Sequence[str], owner: str, lease_seconds: float,
              now: float, frontier: float) -> list[str]:
    """Lease the chosen jobs still claimable; when any was, virtual time moves to `frontier`."""
    claimed = [job_id for job_id in chosen if _take(conn, job_id, owner, lease_seconds, now)]
    if claimed:
        _advance_virtual_time(conn, frontier)
    return claimed


def _take(conn: Connection, job_id: str, owner: str, lease_seconds: float, now: float) -> bool:
    """Lease one job to `owner` if it is still claimable; whether it was."""
    result = conn.execute(
        jobs.update()
        .where(jobs.c.id == job_id, _claimable(now))
        .values(status=JobStatus.PROCESSING.value, lease_owner=owner,
                lease_expires_at=now + lease_seconds, attempts=jobs.c.attempts + 1,
                # a run after a lost lease starts its progress again
                progress_step=0, progress_total=0,
                started_at=sa.func.coalesce(jobs.c.started_at, now), updated_at=now)
    )
    return bool(result.rowcount == 1)


def _claimable(now: float) -> sa.ColumnElement[bool]:
    return sa.or_(
        jobs.c.status == JobStatus.QUEUED.value,
        sa.and_(jobs.c.status == JobStatus.PROCESSING.value, jobs.c.lease_expires_at < now),
    )


def request_to_json(request: GenerationRequest) -> dict[str, Any]:
    # Adapters only when there are some: the idempotency hash of every other request stays
    # what it was before adapters existed.
    adapters = {"loras": [lora.to_json() for lora in request.loras]} if request.loras else {}
    inputs = {} if request.operation is Operation.TEXT else {
        "operation": request.operation.value, "strength": request.strength,
        "input_digest": request.input_digest, "mask_digest": request.mask_digest,
        **({"reference_digests": list(request.reference_digests)}
           if request.reference_digests else {}),
        **({"upscale_factor": request.upscale_factor} if request.upscale_factor else {})}
    return {
        "model": request.model, "prompt": request.prompt, "width": request.width,
        "height": request.height, "num_images": request.num_images,
        "negative_prompt": request.negative_prompt, "seed": request.seed,
        "output_format": request.output_format.value, "output_quality": request.output_quality,
        "steps": request.steps, "guidance_scale": request.guidance_scale,
        "scheduler": request.scheduler, "max_seed": request.max_seed,
        "safety": request.safety.to_json(), "watermark": request.watermark,
        "enhance_prompt": request.enhance_prompt, "original_prompt": request.original_prompt,
        "enhancement": request.enhancement.value,
        "enhancement_detail": request.enhancement_detail, "tier": request.tier,
        "partial_images": request.partial_images, **adapters, **inputs,
    }


def request_from_json(raw: dict[str, Any]) -> GenerationRequest:
    """A stored request; rows written before a field existed read as its default."""
    return GenerationRequest(**{
        **raw, "output_format": ImageFormat(raw["output_format"]),
        "safety": SafetyInput.from_json(raw.get("safety")),
        "enhancement": EnhancementState(raw.get("enhancement", EnhancementState.OFF.value)),
        "loras": tuple(AppliedLora.from_json(lora) for lora in raw.get("loras", ())),
        "operation": Operation(raw.get("operation", Operation.TEXT.value)),
        "reference_digests": tuple(raw.get("reference_digests", ())),
    })


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _image(row: RowMapping) -> JobImage:
    return JobImage(
        image_id=row["image_id"], index=row["idx"], seed=int(row["seed"]), ready=bool(row["ready"]),
        mime=row["mime"], size_bytes=row["size_bytes"], expires_at=_dt(row["expires_at"]),
        nsfw=bool(row["nsfw"]),
        withheld=Withheld(row["withheld"]) if row["withheld"] else None,
        scores=dict(row["safety_scores"]) if row["safety_scores"] else None,
    )


def _load(conn: Connection, job_ids: Sequence[str]) -> list[tuple[Job, str]]:
    if not job_ids:
        return []
    rows = conn.execute(jobs.select().where(jobs.c.id.in_(list(job_ids)))).mappings().all()
    image_rows = conn.execute(
        images.select().where(images.c.job_id.in_(list(job_ids))).order_by(images.c.idx)
    ).mappings().all()
    by_job: dict[str, list[JobImage]] = {}
    for image_row in image_rows:
        by_job.setdefault(image_row["job_id"], []).append(_image(image_row))
    order = {job_id: i for i, job_id in enumerate(job_ids)}
    loaded = [(_job(row, tuple(by_job.get(row["id"], ()))), row["params_hash"]) for row in rows]
    return sorted(loaded, key=lambda pair: order[pair[0].id])


def _job(row: RowMapping, job_images: tuple[JobImage, ...]) -> Job:
    return Job(
        id=row["id"], dialect=row["dialect"], request=request_from_json(row["request"]),
        status=JobStatus(row["status"]), images=job_images,
        created_at=_dt(row["created_at"]) or datetime.now(UTC), backend=row["backend"],
        stand_in_reason=row["stand_in_reason"], cost_usd=float(row["cost"]),
        delivery=delivery_settings(row["options"]), echo=_echo(row["options"]),
        started_at=_dt(row["started_at"]), finished_at=_dt(row["finished_at"]),
        error=None if row["error_code"] is None else ErrorKind.of(row["error_code"]),
        error_message=row["error_message"], attempts=int(row["attempts"]),
        progress_step=int(row["progress_step"]), progress_total=int(row["progress_total"]),
        batch_id=row["batch_id"], engine_seconds=float(row["engine_seconds"]),
        cancel_requested=bool(row["cancel_requested"]), caller=row["caller"] or "",
        task_id=row["task_id"], partials=int(row["partials"]),
    )


def _echo(options: Any) -> dict[str, Any]:
    raw = dict(options or {})
    if "delivery" in raw:
        return dict(raw.get("echo") or {})
    return {k: v for k, v in raw.items() if k not in ("webhook", "webhook_per_image", "upload")}
