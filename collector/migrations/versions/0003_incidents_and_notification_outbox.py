"""incidents, their timeline, overtimes and the notification outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 01:15:54.741242
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import collector.schema

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('incidents',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=256), nullable=False),
    sa.Column('open_key', sa.String(length=256), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('system', sa.String(length=128), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('cause', sa.Text(), nullable=False),
    sa.Column('opened_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('detected_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('level_since', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('respond_by', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('recover_by', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('report_by', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('responded_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('responded_by', sa.String(length=128), nullable=True),
    sa.Column('recovered_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('recovered_by', sa.String(length=128), nullable=True),
    sa.Column('report_submitted_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('report_submitted_by', sa.String(length=128), nullable=True),
    sa.Column('report_ref', sa.Text(), nullable=True),
    sa.Column('closed_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('closed_by', sa.String(length=128), nullable=True),
    sa.Column('reopened', sa.Integer(), nullable=False),
    sa.Column('updated_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incidents')),
    sa.UniqueConstraint('open_key', name=op.f('uq_incidents_open_key'))
    )
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incidents_key_opened_at'), ['key', 'opened_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_incidents_opened_at'), ['opened_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_incidents_state'), ['state'], unique=False)

    op.create_table('incident_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('by', sa.String(length=128), nullable=False),
    sa.Column('level', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['incident_id'], ['incidents.id'], name=op.f('fk_incident_events_incident_id_incidents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incident_events'))
    )
    with op.batch_alter_table('incident_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incident_events_incident_id_id'), ['incident_id', 'id'], unique=False)

    op.create_table('incident_overtimes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('deadline', sa.String(length=8), nullable=False),
    sa.Column('due_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('met_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('counted_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['incident_id'], ['incidents.id'], name=op.f('fk_incident_overtimes_incident_id_incidents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incident_overtimes')),
    sa.UniqueConstraint('incident_id', 'level', 'deadline', name=op.f('uq_incident_overtimes_incident_id_level_deadline'))
    )
    with op.batch_alter_table('incident_overtimes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incident_overtimes_due_at'), ['due_at'], unique=False)

    op.create_table('notifications',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('dedup', sa.String(length=256), nullable=False),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('deadline', sa.String(length=8), nullable=True),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=128), nullable=False),
    sa.Column('due_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('claimed_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('sent_at', collector.schema.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', collector.schema.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['incident_id'], ['incidents.id'], name=op.f('fk_notifications_incident_id_incidents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('dedup', name=op.f('uq_notifications_dedup'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_state_due_at'), ['state', 'due_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_state_due_at'))

    op.drop_table('notifications')
    with op.batch_alter_table('incident_overtimes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_incident_overtimes_due_at'))

    op.drop_table('incident_overtimes')
    with op.batch_alter_table('incident_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_incident_events_incident_id_id'))

    op.drop_table('incident_events')
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_incidents_state'))
        batch_op.drop_index(batch_op.f('ix_incidents_opened_at'))
        batch_op.drop_index(batch_op.f('ix_incidents_key_opened_at'))

    op.drop_table('incidents')
