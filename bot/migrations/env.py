"""Alembic's entry point: runs migrations on the connection `bot.migrate` hands over.

There is no alembic.ini and no URL here: `bot.migrate` builds the Config and passes an open
connection in `config.attributes["connection"]`, so the CLI, `up` and tests share one path.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    # SQLite cannot ALTER most things: batch mode copies the table (bot.migrate keeps triggers).
    render_as_batch=True,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
