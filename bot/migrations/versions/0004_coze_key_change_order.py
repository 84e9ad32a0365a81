"""Per-row Coze order across primary key changes (issue 15, item 10).

An `UPDATE … SET id = <new>` used to file its outbox row under the new key only, so it (and
every later change) did not wait for the changes still queued under the old key. Now:

* `coze_outbox.old_row_key`: set by an update that changed the key, to the key before; the claim
  makes such a row wait for its old key's rows, and later rows of that old key wait for it;
* `ix_coze_outbox_old_key` (partial: only key changes enter it) serves that check;
* every template's capture triggers are re-installed: they write `old_row_key`, and they fire on
  a key change even when no selected field changed.

Revision ID: 0004_coze_key_change_order
Revises: 0003_real_feishu_rules
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004_coze_key_change_order"
down_revision = "0003_real_feishu_rules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("coze_outbox", sa.Column("old_row_key", sa.Text()))  # a plain ADD COLUMN on both
    op.create_index("ix_coze_outbox_old_key", "coze_outbox", ["template_id", "old_row_key", "id"],
                    sqlite_where=sa.text("old_row_key IS NOT NULL"),
                    postgresql_where=sa.text("old_row_key IS NOT NULL"))
    _reinstall_triggers(with_old_key=True)


def downgrade() -> None:
    op.drop_index("ix_coze_outbox_old_key", table_name="coze_outbox")
    with op.batch_alter_table("coze_outbox") as batch:  # SQLite: triggers are set aside meanwhile
        batch.drop_column("old_row_key")
    _reinstall_triggers(with_old_key=False)  # the shape without old_row_key (bot.migrate keeps them)


def _reinstall_triggers(*, with_old_key: bool) -> None:
    """Regenerate each template's capture triggers from its stored row (the same plan the
    template API installs); a template whose table is gone is left without triggers."""
    from bot.coze.triggers import TriggerPlan, replace_triggers

    connection = op.get_bind()
    inspector = sa.inspect(connection)
    tables = set(inspector.get_table_names())
    rows = connection.execute(sa.text(
        "SELECT id, table_name, key_fields, selected_fields, sync_on_insert, sync_on_update, "
        "sync_on_delete, enabled FROM coze_sync_templates ORDER BY id")).all()
    for row in rows:
        wanted = (("insert", row.sync_on_insert), ("update", row.sync_on_update),
                  ("delete", row.sync_on_delete))
        operations = tuple(name for name, on in wanted if on and row.enabled)
        plan = TriggerPlan(row.id, row.table_name, tuple(json.loads(row.key_fields)),
                           tuple(json.loads(row.selected_fields)), operations)
        if row.table_name in tables:
            replace_triggers(connection, row.id, row.table_name, plan, with_old_key=with_old_key)
