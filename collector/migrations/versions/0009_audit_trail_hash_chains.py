"""hash chains over the audit trails (audit_log, maintenance_audit), append-only triggers

Rows present at upgrade time are chained in id order, so old data is covered from then on.
On SQLite the NOT NULL and unique changes rebuild the tables (batch mode), which is why the
triggers are created last.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10 00:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import collector.schema
from collector.auditchain import GENESIS, row_hash

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# the hashed columns as of this revision (not the live schema, which may grow later)
_HASHED: dict[str, list[sa.ColumnClause[Any]]] = {
    'audit_log': [
        sa.column('at', collector.schema.UtcDateTime()),
        sa.column('username', sa.String()),
        sa.column('action', sa.String()),
        sa.column('target', sa.String()),
        sa.column('detail', sa.JSON()),
        sa.column('address', sa.String()),
    ],
    'maintenance_audit': [
        sa.column('maintenance_id', sa.Integer()),
        sa.column('action', sa.String()),
        sa.column('at', collector.schema.UtcDateTime()),
        sa.column('by', sa.String()),
        sa.column('record', sa.JSON()),
    ],
}

_PG_FUNCTION = """
CREATE FUNCTION wardwatch_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (audit trail)', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$
"""


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    if postgresql:
        op.execute(_PG_FUNCTION)
    for name in _HASHED:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
            batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
        _chain_existing_rows(name)
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.alter_column('prev_hash', existing_type=sa.String(length=64),
                                  nullable=False)
            batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=False)
            batch_op.create_unique_constraint(batch_op.f(f'uq_{name}_prev_hash'), ['prev_hash'])
        for event in ('update', 'delete'):
            if postgresql:
                op.execute(f'CREATE TRIGGER {name}_no_{event} BEFORE {event.upper()} ON {name} '
                           'FOR EACH ROW EXECUTE FUNCTION wardwatch_append_only()')
            else:
                op.execute(f'CREATE TRIGGER {name}_no_{event} BEFORE {event.upper()} ON {name} '
                           f"BEGIN SELECT RAISE(ABORT, '{name} is append-only (audit trail)'); "
                           'END')
        if postgresql:
            op.execute(f'CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} '
                       'FOR EACH STATEMENT EXECUTE FUNCTION wardwatch_append_only()')


def _chain_existing_rows(name: str) -> None:
    table = sa.table(name, sa.column('id', sa.Integer()), *_HASHED[name],
                     sa.column('prev_hash', sa.String()), sa.column('hash', sa.String()))
    hashed = [c for c in table.c if c.name not in ('prev_hash', 'hash')]
    bind = op.get_bind()
    rows = bind.execute(sa.select(*hashed).order_by(table.c.id)).mappings().all()
    updates = []
    prev = GENESIS
    for row in rows:
        values = {k: v for k, v in row.items() if k != 'id'}
        values['prev_hash'] = prev
        digest = row_hash(name, values)
        updates.append({'row_id': row['id'], 'new_prev': prev, 'new_hash': digest})
        prev = digest
    if updates:
        bind.execute(table.update().where(table.c.id == sa.bindparam('row_id'))
                     .values(prev_hash=sa.bindparam('new_prev'),
                             hash=sa.bindparam('new_hash')), updates)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for name in reversed(list(_HASHED)):
        for event in ('update', 'delete', 'truncate'):
            if postgresql:
                op.execute(f'DROP TRIGGER IF EXISTS {name}_no_{event} ON {name}')
            else:
                op.execute(f'DROP TRIGGER IF EXISTS {name}_no_{event}')
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'uq_{name}_prev_hash'), type_='unique')
            batch_op.drop_column('hash')
            batch_op.drop_column('prev_hash')
    if postgresql:
        op.execute('DROP FUNCTION IF EXISTS wardwatch_append_only()')
