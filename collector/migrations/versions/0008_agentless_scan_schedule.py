"""agentless scan schedule

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import collector.schema

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agentless_scans',
    sa.Column('agent_id', sa.String(length=128), nullable=False),
    sa.Column('target', sa.String(length=300), nullable=False),
    sa.Column('last_started_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_finished_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_ok', sa.Boolean(), nullable=True),
    sa.Column('last_reason', sa.String(length=32), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_success_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('agent_id', name=op.f('pk_agentless_scans'))
    )


def downgrade() -> None:
    op.drop_table('agentless_scans')
