"""hourly roll-up of raw results

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:03:51.249133
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import collector.schema

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('results_hourly',
    sa.Column('agent_id', sa.String(length=128), nullable=False),
    sa.Column('check_id', sa.String(length=128), nullable=False),
    sa.Column('hour', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('system', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('results', sa.Integer(), nullable=False),
    sa.Column('ok', sa.Integer(), nullable=False),
    sa.Column('warning', sa.Integer(), nullable=False),
    sa.Column('critical', sa.Integer(), nullable=False),
    sa.Column('unknown', sa.Integer(), nullable=False),
    sa.Column('duration_avg_s', sa.Float(), nullable=False),
    sa.Column('duration_max_s', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('agent_id', 'check_id', 'hour', name=op.f('pk_results_hourly'))
    )


def downgrade() -> None:
    op.drop_table('results_hourly')
