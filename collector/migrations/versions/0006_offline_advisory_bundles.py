"""offline advisory bundles

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 02:35:39.323434
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import collector.schema

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('advisory_bundles',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('source_date', sa.String(length=32), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('imported_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('imported_by', sa.String(length=128), nullable=False),
    sa.Column('entries', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_advisory_bundles')),
    sa.UniqueConstraint('kind', 'sha256', name=op.f('uq_advisory_bundles_kind_sha256'))
    )


def downgrade() -> None:
    op.drop_table('advisory_bundles')
