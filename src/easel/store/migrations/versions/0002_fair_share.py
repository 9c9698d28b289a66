"""Fair sharing: each job's work units and fair queueing tags, the scheduler's virtual time;
and the rounds of partial images a job has stored (streamed previews).

A database brought up from before Alembic already has these (schema.upgrade adds every column
the tables define before stamping the baseline), so each step checks first.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = ("work", "fair_start", "fair_finish")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = {column["name"] for column in inspector.get_columns("jobs")}
    with op.batch_alter_table("jobs") as batch:
        for name in COLUMNS:
            if name not in present:
                batch.add_column(sa.Column(name, sa.Float(), nullable=False, server_default="0"))
        if "partials" not in present:
            batch.add_column(sa.Column("partials", sa.Integer(), nullable=False,
                                       server_default="0"))
    indexes = {index["name"] for index in inspector.get_indexes("jobs")}
    if "ix_jobs_fair_start" not in indexes:
        op.create_index(op.f("ix_jobs_fair_start"), "jobs", ["fair_start"], unique=False)
    if "ix_jobs_caller_status" not in indexes:
        op.create_index("ix_jobs_caller_status", "jobs", ["caller", "status"], unique=False)
    if not inspector.has_table("fair_clock"):
        op.create_table("fair_clock",
                        sa.Column("id", sa.Integer(), nullable=False),
                        sa.Column("virtual", sa.Float(), nullable=False),
                        sa.PrimaryKeyConstraint("id"))


def downgrade() -> None:
    op.drop_table("fair_clock")
    op.drop_index("ix_jobs_caller_status", table_name="jobs")
    op.drop_index(op.f("ix_jobs_fair_start"), table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("partials")
        for name in reversed(COLUMNS):
            batch.drop_column(name)
