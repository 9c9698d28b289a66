"""The tables of the job store, in one place: jobs, their images, and the delivery outbox.

`upgrade` adds the columns a newer easel needs to a database an older one created (the schema
only ever grows), so an existing data directory keeps working after an update.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

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
    sa.Column("batch_key", sa.String(512), nullable=False),  # jobs that may share an engine call
    sa.Column("num_images", sa.Integer, nullable=False),
    sa.Column("backend", sa.String(512), nullable=False, default=""),
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
    # A caller's jobs, newest first (`GET /easel/jobs`, `easel jobs list`, the playground).
    sa.Index("ix_jobs_caller_created", "caller", "created_at"),
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


health = sa.Table(  # one row, rewritten by the readiness probe: can the store be written?
    "health",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
)


def create(engine: Engine) -> None:
    """Create missing tables, then add the columns newer versions introduced."""
    metadata.create_all(engine)
    upgrade(engine)


def upgrade(engine: Engine) -> None:
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            ddl = column.type.compile(engine.dialect)
            null = "" if column.nullable else " NOT NULL"
            default = _default_sql(column, engine)
            with engine.begin() as conn:
                conn.execute(sa.text(
                    f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {ddl}{default}{null}'
                ))
        indexes = {index["name"] for index in sa.inspect(engine).get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                _create_index(engine, table, index)


def _create_index(engine: Engine, table: sa.Table, index: sa.Index) -> None:
    """Add an index an older database lacks; another process starting at the same moment may
    add it first, which is just as good."""
    try:
        index.create(engine)
    except sa.exc.DatabaseError:
        names = {found["name"] for found in sa.inspect(engine).get_indexes(table.name)}
        if index.name not in names:
            raise


def _default_sql(column: sa.Column[object], engine: Engine) -> str:
    """` DEFAULT ...` for a server default (a NOT NULL column added to old rows needs one)."""
    default = column.server_default
    if default is None:
        return ""
    arg = default.arg  # type: ignore[attr-defined]
    if isinstance(arg, str):
        return " DEFAULT '" + arg.replace("'", "''") + "'"
    return f" DEFAULT {arg.compile(engine)}"
