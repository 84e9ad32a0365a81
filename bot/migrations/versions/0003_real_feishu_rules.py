"""Columns for what real Feishu refuses (issue 14).

* `cache_sources.events_error`: why change events do not flow for a source (subscribe refused:
  only a bitable's owner or manager may subscribe); NULL when they do or do not apply.
* `cache_tables.formulas_refreshed_at`: formula and lookup values fire no change events, so
  their columns are re-read on a schedule; when that last happened.
* `chat_cards.finished_reason`: why a card stopped following its job when Feishu refused the
  patch (recalled, older than 14 days), NULL when it ended with its job.

Revision ID: 0003_real_feishu_rules
Revises: 0002_export_files_sha256
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_real_feishu_rules"
down_revision = "0002_export_files_sha256"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cache_sources") as batch:
        batch.add_column(sa.Column("events_error", sa.Text()))
    with op.batch_alter_table("cache_tables") as batch:
        batch.add_column(sa.Column("formulas_refreshed_at", sa.TIMESTAMP()))
    with op.batch_alter_table("chat_cards") as batch:
        batch.add_column(sa.Column("finished_reason", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("chat_cards") as batch:
        batch.drop_column("finished_reason")
    with op.batch_alter_table("cache_tables") as batch:
        batch.drop_column("formulas_refreshed_at")
    with op.batch_alter_table("cache_sources") as batch:
        batch.drop_column("events_error")
