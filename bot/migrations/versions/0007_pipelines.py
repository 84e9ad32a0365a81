"""Pipelines (issue 17): a source's rows upserted into a bitable table on a schedule, then read
back and verified.

* `pipelines`: the definitions (`spec` as JSON), whether each is enabled, where its schedule and
  its last run stand;
* `pipeline_runs`: one run over a range of days — state, trigger, counts, summary, error,
  attempts, heartbeat; at most one queued or running per pipeline (`ux_pipeline_runs_active`,
  partial);
* `pipeline_run_days`: what the source gave for each day of a run, so a resumed run does not
  fetch it again.

New tables only: nothing existing is touched. The DDL is this revision's own frozen copy of what
schema.sql said when it was written (schema.sql moves on; a revision must not).

Revision ID: 0007_pipelines
Revises: 0006_provider_tokens
"""

from __future__ import annotations

from alembic import op

revision = "0007_pipelines"
down_revision = "0006_provider_tokens"
branch_labels = None
depends_on = None

TABLES = (
    """CREATE TABLE pipelines (
    id                INTEGER PRIMARY KEY,
    name              VARCHAR(64) NOT NULL,
    spec              TEXT NOT NULL,
    enabled           BOOLEAN NOT NULL DEFAULT TRUE,
    created_at        TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at        TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_scheduled_at TIMESTAMP,
    covered_through   DATE,
    last_run_id       INTEGER,
    last_run_state    VARCHAR(12),
    last_run_at       TIMESTAMP,
    CONSTRAINT uq_pipelines_name UNIQUE (name),
    CONSTRAINT ck_pipelines_last_run_state CHECK (
        last_run_state IN ('queued', 'running', 'succeeded', 'failed')
    )
)""",
    """CREATE TABLE pipeline_runs (
    id           INTEGER PRIMARY KEY,
    pipeline     VARCHAR(64) NOT NULL,
    date_from    DATE NOT NULL,
    date_to      DATE NOT NULL,
    state        VARCHAR(12) NOT NULL DEFAULT 'queued',
    triggered_by VARCHAR(12) NOT NULL,
    fetched      INTEGER NOT NULL DEFAULT 0,
    created      INTEGER NOT NULL DEFAULT 0,
    updated      INTEGER NOT NULL DEFAULT 0,
    deleted      INTEGER NOT NULL DEFAULT 0,
    calls        INTEGER NOT NULL DEFAULT 0,
    summary      TEXT,
    error        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    queued_at    TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    started_at   TIMESTAMP,
    finished_at  TIMESTAMP,
    heartbeat_at TIMESTAMP,
    not_before   TIMESTAMP,
    requested_by VARCHAR(64),
    chat_id      VARCHAR(64),
    message_id   VARCHAR(64),
    CONSTRAINT ck_pipeline_runs_state CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    CONSTRAINT ck_pipeline_runs_triggered_by CHECK (triggered_by IN ('schedule', 'manual', 'chat')),
    CONSTRAINT ck_pipeline_runs_dates CHECK (date_from <= date_to)
)""",
    "CREATE INDEX ix_pipeline_runs_pipeline ON pipeline_runs (pipeline, id)",
    "CREATE INDEX ix_pipeline_runs_state ON pipeline_runs (state, heartbeat_at)",
    "CREATE UNIQUE INDEX ux_pipeline_runs_active ON pipeline_runs (pipeline) "
    "WHERE state IN ('queued', 'running')",
    """CREATE TABLE pipeline_run_days (
    id           INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL REFERENCES pipeline_runs (id) ON DELETE CASCADE,
    day          DATE NOT NULL,
    state        VARCHAR(8) NOT NULL DEFAULT 'pending',
    row_count    INTEGER,
    fetched_rows TEXT,
    detail       TEXT,
    fetched_at   TIMESTAMP,
    CONSTRAINT uq_pipeline_run_days UNIQUE (run_id, day),
    CONSTRAINT ck_pipeline_run_days_state CHECK (state IN ('pending', 'fetched', 'written'))
)""",
)

# PostgreSQL has no rowid: each integer primary key gets a sequence-backed default, as in
# schema.sql's PostgreSQL section.
SEQUENCES = ("pipelines", "pipeline_runs", "pipeline_run_days")


def upgrade() -> None:
    for statement in TABLES:
        op.execute(statement)
    if op.get_bind().dialect.name == "postgresql":
        for table in SEQUENCES:
            op.execute(f"CREATE SEQUENCE {table}_id_seq OWNED BY {table}.id")
            op.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT nextval('{table}_id_seq')")


def downgrade() -> None:
    # the sequences are OWNED BY their columns: they go with the tables
    for table in ("pipeline_run_days", "pipeline_runs", "pipelines"):
        op.execute(f"DROP TABLE {table}")
