"""Baseline: the schema as it was when migrations were introduced.

Runs the frozen `0001_baseline.sql` (common section, then the connected dialect's). Its
statements are all idempotent, so this revision also adopts a database made by an earlier
build: missing tables appear, existing rows are untouched.

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from bot.db import run_schema_sections

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

BASELINE_SQL = Path(__file__).with_suffix(".sql")

# Children before parents, so foreign keys never block a drop.
TABLES = (
    "chat_cards", "chat_commands", "coze_manual_syncs", "coze_deliveries", "coze_outbox",
    "coze_sync_templates", "contract_cooperation_records", "export_files", "export_windows",
    "export_runs", "export_auth", "cache_pending", "cache_documents", "cache_sheets",
    "cache_records", "cache_fields", "cache_tables", "cache_sources", "alerts",
    "token_refreshes", "oauth_tokens", "event_receipts",
)


def upgrade() -> None:
    bind = op.get_bind()
    sql = BASELINE_SQL.read_text(encoding="utf-8")
    run_schema_sections(bind, sql)
    missing = _missing_columns(bind, sql)
    if missing:  # CREATE … IF NOT EXISTS adds no column to a table that exists: refuse, roll back
        from bot.migrate import DatabaseNotReady

        raise DatabaseNotReady(
            f"this database was made by a build older than migrations can adopt (missing columns: "
            f"{', '.join(missing)}); nothing was changed: see docs/migrations.md, 'Older databases'")


def _missing_columns(bind, sql: str) -> list[str]:
    """Columns the baseline declares that the database's tables lack (names only: a database
    made before some column was added has the table, so IF NOT EXISTS skipped it)."""
    import sqlite3

    from sqlalchemy import inspect

    from bot.db import split_sections

    reference = sqlite3.connect(":memory:")
    try:
        reference.executescript(split_sections(sql)["common"])
        declared = {table: [row[1] for row in reference.execute(f"PRAGMA table_info({table})")]
                    for table in TABLES}
    finally:
        reference.close()
    inspector = inspect(bind)
    missing = []
    for table, columns in declared.items():
        present = {c["name"] for c in inspector.get_columns(table)}
        missing += [f"{table}.{column}" for column in columns if column not in present]
    return missing


def downgrade() -> None:
    """Back to an empty database: every table of the baseline goes (and its data with it)."""
    bind = op.get_bind()
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS coze_wake() CASCADE")
