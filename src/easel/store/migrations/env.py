"""Alembic's environment: migrations run on the connection easel hands over (schema.create),
or, from the `alembic` command line, on `sqlalchemy.url` of its config."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from easel.store.schema import metadata


def run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection, target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying
    )
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        run(conn)
