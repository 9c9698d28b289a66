"""The tables of the job store, in one place: jobs, their images, and the delivery outbox.

`create` migrates a database to the newest schema with Alembic (easel.store.migrations), so an
existing data directory keeps working after an update.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("dialect", sa.String(32), nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("params_hash", sa.String(64), nullable=False),
    # {"delivery": DeliverySettings.to_json(), "echo": the dialect's opaque data}
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("batch_key", sa.Text, nullable=False),  # jobs that may share an engine call
    sa.Column("num_images", sa.Integer, nullable=False),
    sa.Column("backend", sa.Text, nullable=False, default=""),
    sa.Column("stand_in_reason", sa.Text),
    sa.Column("cost", sa.Float, nullable=False, default=0.0),
    sa.Column("error_code", sa.String(64)),  # an ErrorKind value
    sa.Column("error_message", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_expires_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("progress_step", sa.Integer, nullable=False, default=0),
    sa.Column("progress_total", sa.Integer, nullable=False, default=0),
    sa.Column("batch_id", sa.String(64)),
    sa.Column("engine_seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("caller", sa.String(128), nullable=False, server_default=""),  # the principal
    sa.Column("task_id", sa.String(128)),  # the client's own id for the job, as it sent it
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    # Fair sharing (store/jobs.py): the job's cost in work units (seconds on the reference GPU)
    # and its start-time fair queueing tags; workers claim in `fair_start` order.
    sa.Column("work", sa.Float, nullable=False, server_default="0"),
    sa.Column("fair_start", sa.Float, nullable=False, server_default="0", index=True),
    sa.Column("fair_finish", sa.Float, nullable=False, server_default="0"),
    # Rounds of partial images stored so far (a stream of them sends each once).
    sa.Column("partials", sa.Integer, nullable=False, server_default="0"),
    # A caller's jobs, newest first (`GET /easel/jobs`, `easel jobs list`, the playground).
    sa.Index("ix_jobs_caller_created", "caller", "created_at"),
    # A caller's unfinished jobs: its queued work and its last finish tag, at every submission.
    sa.Index("ix_jobs_caller_status", "caller", "status"),
)

fair_clock = sa.Table(  # one row: the scheduler's virtual time, the start tag last claimed
    "fair_clock",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("virtual", sa.Float, nullable=False),
)

images = sa.Table(
    "images",
    metadata,
    sa.Column("image_id", sa.String(64), primary_key=True),
    sa.Column("job_id", sa.String(128), sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("ext", sa.String(8), nullable=False),
    sa.Column("ready", sa.Boolean, nullable=False, default=False),
    sa.Column("mime", sa.String(32)),
    sa.Column("size_bytes", sa.Integer),
    sa.Column("nsfw", sa.Boolean, nullable=False, default=False),  # flagged by the check
    sa.Column("withheld", sa.String(16)),  # a domain.safety.Withheld: nothing was stored
    sa.Column("safety_scores", sa.JSON),  # the detector's scores; NULL: not checked
    sa.Column("expires_at", sa.Float, index=True),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # also the webhook-id
    sa.Column("job_id", sa.String(128), sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("image_id", sa.String(64), nullable=False, default=""),  # "" = the whole job
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),  # the job's terminal status
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False, index=True),
    sa.Column("first_attempt_at", sa.Float),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_expires_at", sa.Float),
    sa.Column("body", sa.LargeBinary),  # rendered once, so every retry sends the same bytes
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)


loras = sa.Table(  # the LoRA adapters an operator allow-listed (`easel lora add`)
    "loras",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("base", sa.String(200), nullable=False),  # the catalog backend it fits
    sa.Column("sha256", sa.String(64), nullable=False),  # its bytes: blob lora-<sha256>
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("scale", sa.Float, nullable=False),
    sa.Column("trigger", sa.Text, nullable=False, default=""),
    sa.Column("license", sa.Text, nullable=False, default=""),
    sa.Column("aliases", sa.JSON, nullable=False),  # Runware AIR ids that name it
    sa.Column("layout", sa.String(32), nullable=False, default=""),
    sa.Column("rank", sa.Integer),
    sa.Column("added_at", sa.Float, nullable=False),
)


uploads = sa.Table(  # images callers sent to be named later (Runware imageUpload)
    "uploads",
    metadata,
    sa.Column("image_id", sa.String(36), primary_key=True),
    sa.Column("caller", sa.String(200), nullable=False, index=True),  # only it may name it
    sa.Column("ext", sa.String(8), nullable=False),  # its blob: <image_id>.<ext>
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),  # moved on by each use
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
)


health = sa.Table(  # one row, rewritten by the readiness probe: can the store be written?
    "health",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
)


def create(engine: Engine) -> None:
    """Bring the store to the newest schema: Alembic's migrations (easel.store.migrations),
    one process at a time. A database easel created before migrations existed first gets the
    columns and indexes it lacks and is stamped with the baseline revision."""
    from alembic import command

    with _migration_lock(engine), engine.begin() as conn:
        config = _alembic_config(conn)
        tables = set(sa.inspect(conn).get_table_names())
        if "jobs" in tables and "alembic_version" not in tables:
            upgrade(conn)
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")


BASELINE = "0001"


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "easel.store:migrations")
    config.attributes["connection"] = conn
    return config


def _migration_lock(engine: Engine) -> contextlib.AbstractContextManager[None]:
    """Processes starting at once (an API and its workers) migrate one after another."""
    if engine.dialect.name == "postgresql":
        return _advisory_lock(engine)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:" \
            and not database.startswith("file:"):
        return _file_lock(f"{database}.migrate-lock")
    return contextlib.nullcontext()  # an in-memory or URI database: one process only


@contextlib.contextmanager
def _advisory_lock(engine: Engine) -> Iterator[None]:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


MIGRATION_LOCK_KEY = 0x6561_7365_6C  # "easel"


def upgrade(conn: Connection) -> None:
    """The pre-migration upgrade, kept for databases from before Alembic: add the columns and
    indexes a newer easel needed (the schema only ever grew until then)."""
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            table.create(conn)
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            ddl = column.type.compile(conn.dialect)
            null = "" if column.nullable else " NOT NULL"
            default = _default_sql(column, conn)
            conn.execute(sa.text(
                f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {ddl}{default}{null}'
            ))
        indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(conn)


def _default_sql(column: sa.Column[object], conn: Connection) -> str:
    """` DEFAULT ...` for a server default (a NOT NULL column added to old rows needs one)."""
    default = column.server_default
    if default is None:
        return ""
    arg = default.arg  # type: ignore[attr-defined]
    if isinstance(arg, str):
        return " DEFAULT '" + arg.replace("'", "''") + "'"
    return f" DEFAULT {arg.compile(conn)}"
