"""Images callers upload to name in later requests (Runware's imageUpload).

A database brought up from before Alembic already has the table (schema.upgrade creates every
table the schema defines before stamping the baseline), so the step checks first.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("uploads"):
        return
    op.create_table(
        "uploads",
        sa.Column("image_id", sa.String(36), nullable=False),
        sa.Column("caller", sa.String(200), nullable=False),
        sa.Column("ext", sa.String(8), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("image_id"),
    )
    op.create_index("ix_uploads_caller", "uploads", ["caller"])
    op.create_index("ix_uploads_expires_at", "uploads", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_uploads_expires_at", "uploads")
    op.drop_index("ix_uploads_caller", "uploads")
    op.drop_table("uploads")
