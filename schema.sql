-- Feishu Bridge database schema: the source of truth.
--
-- The "common" section runs unchanged on SQLite and PostgreSQL. Parts only one dialect
-- understands live in the "dialect: …" sections below it; `feishu-bridge db init` runs the
-- common section and then the section of the connected dialect. Every statement is
-- idempotent, so init can run on every release.
--
-- Conventions: timestamps are UTC, stored as TIMESTAMP without zone; JSON is stored as TEXT;
-- integer primary keys autoincrement (SQLite rowid alias; PostgreSQL sequence, see below).

-- ===== section: common =====

-- One row per Feishu event delivery we accepted. `event_id` is unique, so a re-delivered
-- event is recognised and acknowledged without being processed again.
CREATE TABLE IF NOT EXISTS event_receipts (
    id           INTEGER PRIMARY KEY,
    event_id     VARCHAR(128) NOT NULL,
    event_type   VARCHAR(128) NOT NULL,
    schema_version VARCHAR(8) NOT NULL DEFAULT '2.0',
    received_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    payload      TEXT NOT NULL,
    status       VARCHAR(16) NOT NULL DEFAULT 'received',
    attempts     INTEGER NOT NULL DEFAULT 0,
    claimed_at   TIMESTAMP,
    processed_at TIMESTAMP,
    last_error   TEXT,
    job_id       VARCHAR(64),  -- the RQ job that carries this receipt (the sweeper checks it is alive)
    CONSTRAINT uq_event_receipts_event_id UNIQUE (event_id),
    CONSTRAINT ck_event_receipts_status CHECK (
        status IN ('received', 'queued', 'processing', 'done', 'failed', 'unhandled')
    )
);

CREATE INDEX IF NOT EXISTS ix_event_receipts_status ON event_receipts (status, received_at);
CREATE INDEX IF NOT EXISTS ix_event_receipts_type ON event_receipts (event_type, received_at);

-- ===== section: dialect: postgresql =====

-- PostgreSQL has no rowid: give each integer primary key a sequence-backed default.
CREATE SEQUENCE IF NOT EXISTS event_receipts_id_seq OWNED BY event_receipts.id;
ALTER TABLE event_receipts ALTER COLUMN id SET DEFAULT nextval('event_receipts_id_seq');

-- ===== section: dialect: sqlite =====

-- (nothing yet: SQLite's INTEGER PRIMARY KEY already autoincrements)
