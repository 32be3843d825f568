"""Alembic environment: runs on the connection store.db.migrate() hands it (no alembic.ini needed)."""
from alembic import context
from sqlmodel import SQLModel

import store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
import store.boundaries, store.webhooks  # noqa: F401,E401  (their tables too; webhooks imports the outbox)

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
