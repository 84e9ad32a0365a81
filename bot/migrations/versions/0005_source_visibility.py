"""Per-source visibility in chat (issue 15, item 11).

* `cache_sources.visibility`: who may read the source in chat — `allowed` (chats in
  CHAT_ALLOWED_CHATS, admins in private chat), `owner` (its `--as-user` token's owner and the
  admins, in private chat only) or `chats` (the chats listed, admins in private chat); see
  bot/caches/visibility.py;
* `cache_sources.visible_chats`: the chat ids (a JSON list) for `chats`.

Every existing row is kept; sources read with a user's token become `owner`, the others
`allowed` — in a shared chat, a user-token source is no longer readable until an operator
opens it (`feishu-bridge sources visibility NAME chats --chats …`).

Revision ID: 0005_source_visibility
Revises: 0004_coze_key_change_order
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_source_visibility"
down_revision = "0004_coze_key_change_order"
branch_labels = None
depends_on = None

CHECK = "visibility IN ('allowed', 'owner', 'chats')"


def upgrade() -> None:
    with op.batch_alter_table("cache_sources") as batch:  # SQLite copies the table for the check
        batch.add_column(sa.Column("visibility", sa.String(16), nullable=False,
                                   server_default=sa.text("'chats'")))
        batch.add_column(sa.Column("visible_chats", sa.Text()))
        batch.create_check_constraint("ck_cache_sources_visibility", CHECK)
    # The default fails closed ('chats' with no chat: admins' private chats only), for a row an
    # older build inserts during a rolling deploy; the rows that exist get what they had.
    op.execute("UPDATE cache_sources SET visibility = 'allowed' WHERE as_user IS NULL")
    op.execute("UPDATE cache_sources SET visibility = 'owner' WHERE as_user IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("cache_sources") as batch:
        batch.drop_constraint("ck_cache_sources_visibility", type_="check")
        batch.drop_column("visible_chats")
        batch.drop_column("visibility")
