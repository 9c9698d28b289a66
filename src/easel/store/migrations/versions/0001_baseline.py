"""The baseline: the job store as easel created it before migrations (jobs, their images,
the delivery outbox, API keys, the readiness row).

A database that easel created before Alembic managed the schema is brought up to this
revision by `schema.create` (the columns and indexes it lacks) and then stamped with it.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('revoked_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('health',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('jobs',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('dialect', sa.String(length=32), nullable=False),
    sa.Column('request', sa.JSON(), nullable=False),
    sa.Column('params_hash', sa.String(length=64), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('batch_key', sa.Text(), nullable=False),
    sa.Column('num_images', sa.Integer(), nullable=False),
    sa.Column('backend', sa.Text(), nullable=False),
    sa.Column('stand_in_reason', sa.Text(), nullable=True),
    sa.Column('cost', sa.Float(), nullable=False),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_expires_at', sa.Float(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('progress_step', sa.Integer(), nullable=False),
    sa.Column('progress_total', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.String(length=64), nullable=True),
    sa.Column('engine_seconds', sa.Float(), nullable=False),
    sa.Column('caller', sa.String(length=128), server_default='', nullable=False),
    sa.Column('task_id', sa.String(length=128), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_jobs_caller_created', 'jobs', ['caller', 'created_at'], unique=False)
    op.create_index(op.f('ix_jobs_created_at'), 'jobs', ['created_at'], unique=False)
    op.create_index(op.f('ix_jobs_status'), 'jobs', ['status'], unique=False)
    op.create_table('deliveries',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('job_id', sa.String(length=128), nullable=False),
    sa.Column('image_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.Float(), nullable=False),
    sa.Column('first_attempt_at', sa.Float(), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_expires_at', sa.Float(), nullable=True),
    sa.Column('body', sa.LargeBinary(), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_deliveries_job_id'), 'deliveries', ['job_id'], unique=False)
    op.create_index(op.f('ix_deliveries_next_attempt_at'), 'deliveries', ['next_attempt_at'],
                    unique=False)
    op.create_index(op.f('ix_deliveries_status'), 'deliveries', ['status'], unique=False)
    op.create_table('images',
    sa.Column('image_id', sa.String(length=64), nullable=False),
    sa.Column('job_id', sa.String(length=128), nullable=False),
    sa.Column('idx', sa.Integer(), nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('ext', sa.String(length=8), nullable=False),
    sa.Column('ready', sa.Boolean(), nullable=False),
    sa.Column('mime', sa.String(length=32), nullable=True),
    sa.Column('size_bytes', sa.Integer(), nullable=True),
    sa.Column('nsfw', sa.Boolean(), nullable=False),
    sa.Column('withheld', sa.String(length=16), nullable=True),
    sa.Column('safety_scores', sa.JSON(), nullable=True),
    sa.Column('expires_at', sa.Float(), nullable=True),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('image_id')
    )
    op.create_index(op.f('ix_images_expires_at'), 'images', ['expires_at'], unique=False)
    op.create_index(op.f('ix_images_job_id'), 'images', ['job_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_images_job_id'), table_name='images')
    op.drop_index(op.f('ix_images_expires_at'), table_name='images')
    op.drop_table('images')
    op.drop_index(op.f('ix_deliveries_status'), table_name='deliveries')
    op.drop_index(op.f('ix_deliveries_next_attempt_at'), table_name='deliveries')
    op.drop_index(op.f('ix_deliveries_job_id'), table_name='deliveries')
    op.drop_table('deliveries')
    op.drop_index(op.f('ix_jobs_status'), table_name='jobs')
    op.drop_index(op.f('ix_jobs_created_at'), table_name='jobs')
    op.drop_index('ix_jobs_caller_created', table_name='jobs')
    op.drop_table('jobs')
    op.drop_table('health')
    op.drop_table('api_keys')
