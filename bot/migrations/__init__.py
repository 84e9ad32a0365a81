"""Alembic migrations: `env.py`, `versions/` (one script per schema change).

`ALL_REVISIONS` lists them oldest first, so a process can tell at start-up whether its
database is behind with one query and no Alembic import; tests/test_migrations.py checks the
list against the scripts.
"""

ALL_REVISIONS = (
    "0001_baseline", "0002_export_files_sha256", "0003_real_feishu_rules", "0004_coze_key_change_order",
    "0005_source_visibility", "0006_provider_tokens", "0007_pipelines",
)
HEAD = ALL_REVISIONS[-1]
