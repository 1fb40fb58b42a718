"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 22:25:44.368631
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import collector.schema

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agents',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=True),
    sa.Column('created_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_seen_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_address', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agents')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_agents_token_hash'))
    )
    op.create_table('check_intervals',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('agent_id', sa.String(length=128), nullable=False),
    sa.Column('check_id', sa.String(length=128), nullable=False),
    sa.Column('system', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('start', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('end', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_result_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('results', sa.Integer(), nullable=False),
    sa.Column('is_open', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_check_intervals'))
    )
    with op.batch_alter_table('check_intervals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_check_intervals_agent_id_check_id_end'), ['agent_id', 'check_id', 'end'], unique=False)
        batch_op.create_index(batch_op.f('ix_check_intervals_end'), ['end'], unique=False)

    op.create_table('maintenance',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('system', sa.String(length=128), nullable=False),
    sa.Column('start', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('end', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('approved_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('cancelled_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_maintenance'))
    )
    with op.batch_alter_table('maintenance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_maintenance_system_end'), ['system', 'end'], unique=False)

    op.create_table('results',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('agent_id', sa.String(length=128), nullable=False),
    sa.Column('check_id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('system', sa.String(length=128), nullable=False),
    sa.Column('target', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('started_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=False),
    sa.Column('interval_s', sa.Float(), nullable=True),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('received_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_results'))
    )
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_results_agent_id_check_id_started_at'), ['agent_id', 'check_id', 'started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_results_started_at'), ['started_at'], unique=False)

    op.create_table('maintenance_audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('maintenance_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('by', sa.String(length=128), nullable=False),
    sa.Column('record', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['maintenance_id'], ['maintenance.id'], name=op.f('fk_maintenance_audit_maintenance_id_maintenance')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_maintenance_audit')),
    sa.UniqueConstraint('maintenance_id', 'at', 'action', name=op.f('uq_maintenance_audit_maintenance_id_at_action'))
    )


def downgrade() -> None:
    op.drop_table('maintenance_audit')
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_results_started_at'))
        batch_op.drop_index(batch_op.f('ix_results_agent_id_check_id_started_at'))

    op.drop_table('results')
    with op.batch_alter_table('maintenance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_maintenance_system_end'))

    op.drop_table('maintenance')
    with op.batch_alter_table('check_intervals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_check_intervals_end'))
        batch_op.drop_index(batch_op.f('ix_check_intervals_agent_id_check_id_end'))

    op.drop_table('check_intervals')
    op.drop_table('agents')
