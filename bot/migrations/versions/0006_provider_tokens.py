"""External OAuth providers share the token store (issue 17, item 1).

* `oauth_tokens.provider`, `token_refreshes.provider`: whose grant — `feishu` (a Feishu user's,
  as every existing row is) or a provider declared in PIPELINE_MODULES (an ad platform's API);
* `oauth_tokens`' unique key becomes (provider, subject);
* `token_refreshes`' history index becomes (provider, subject, at).

Every existing row is kept and becomes provider `feishu`. A step back deletes the grants and
history of the other providers (the old unique key could not hold them) and drops the columns.

Revision ID: 0006_provider_tokens
Revises: 0005_source_visibility
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_provider_tokens"
down_revision = "0005_source_visibility"
branch_labels = None
depends_on = None


def _provider() -> sa.Column:
    return sa.Column("provider", sa.String(64), nullable=False, server_default=sa.text("'feishu'"))


def upgrade() -> None:
    with op.batch_alter_table("oauth_tokens") as batch:  # SQLite copies the table for the key
        batch.add_column(_provider())
        batch.drop_constraint("uq_oauth_tokens_subject", type_="unique")
        batch.create_unique_constraint("uq_oauth_tokens_provider_subject", ["provider", "subject"])
    op.drop_index("ix_token_refreshes_subject", table_name="token_refreshes")
    with op.batch_alter_table("token_refreshes") as batch:
        batch.add_column(_provider())
    op.create_index("ix_token_refreshes_provider_subject", "token_refreshes", ["provider", "subject", "at"])


def downgrade() -> None:
    op.execute("DELETE FROM oauth_tokens WHERE provider <> 'feishu'")
    op.execute("DELETE FROM token_refreshes WHERE provider <> 'feishu'")
    op.drop_index("ix_token_refreshes_provider_subject", table_name="token_refreshes")
    with op.batch_alter_table("token_refreshes") as batch:
        batch.drop_column("provider")
    op.create_index("ix_token_refreshes_subject", "token_refreshes", ["subject", "at"])
    with op.batch_alter_table("oauth_tokens") as batch:
        batch.drop_constraint("uq_oauth_tokens_provider_subject", type_="unique")
        batch.drop_column("provider")
        batch.create_unique_constraint("uq_oauth_tokens_subject", ["subject"])
