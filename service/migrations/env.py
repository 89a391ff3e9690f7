"""Alembic environment: runs on the connection ``service.db.upgrade`` passes in (which holds the migration lock)."""

from __future__ import annotations

from alembic import context

from service.db import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
