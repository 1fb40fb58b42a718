"""Alembic environment: runs migrations on the connection the collector hands over.

The collector calls `collector.store.migrate()`, which passes its own connection in
`config.attributes["connection"]`; there is no alembic.ini to keep in step.
"""

from __future__ import annotations

from alembic import context

from collector.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
