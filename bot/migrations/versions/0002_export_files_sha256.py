"""Index export_files.sha256, for the duplicate-file check.

Every placed file is compared with the matched files of the same digest
(bot/export/placement.py), which scanned the whole table.

Revision ID: 0002_export_files_sha256
Revises: 0001_baseline
"""

from __future__ import annotations

from alembic import op

revision = "0002_export_files_sha256"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_export_files_sha256", "export_files", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_export_files_sha256", table_name="export_files")
