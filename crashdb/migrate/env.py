"""Alembic's environment: migrations run on the connection crashdb hands over."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("crashdb migrations run through crashdb.migrate.upgrade, not alembic's CLI")

context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
