"""patch inventories and security findings

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 02:14:25.343126
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import collector.schema

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('findings',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('host', sa.String(length=128), nullable=False),
    sa.Column('check_id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=256), nullable=False),
    sa.Column('open_key', sa.String(length=400), nullable=True),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('first_seen', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_seen', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('fixed_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_findings')),
    sa.UniqueConstraint('open_key', name=op.f('uq_findings_open_key'))
    )
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_findings_first_seen'), ['first_seen'], unique=False)
        batch_op.create_index(batch_op.f('ix_findings_host_key'), ['host', 'key'], unique=False)

    op.create_table('inventories',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('host', sa.String(length=128), nullable=False),
    sa.Column('check_id', sa.String(length=128), nullable=False),
    sa.Column('result_id', sa.String(length=36), nullable=False),
    sa.Column('collected_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('packages', sa.JSON(), nullable=True),
    sa.Column('packages_hash', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inventories')),
    sa.UniqueConstraint('result_id', name=op.f('uq_inventories_result_id'))
    )
    with op.batch_alter_table('inventories', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inventories_host_collected_at'), ['host', 'collected_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('inventories', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inventories_host_collected_at'))

    op.drop_table('inventories')
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_findings_host_key'))
        batch_op.drop_index(batch_op.f('ix_findings_first_seen'))

    op.drop_table('findings')
