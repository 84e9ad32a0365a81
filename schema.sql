-- Feishu Bridge database schema: the readable current schema.
--
-- Databases get here through the migrations in bot/migrations/versions/ (`feishu-bridge db
-- upgrade`); tests/test_migrations.py proves that upgrading an empty database and running this
-- file give the same schema, on SQLite and PostgreSQL. A schema change therefore goes into
-- this file AND a new migration (see docs/migrations.md).
--
-- The "common" section runs unchanged on SQLite and PostgreSQL. Parts only one dialect
-- understands live in the "dialect: …" sections below it. Every statement is idempotent.
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

-- One row per OAuth grant: an authorised Feishu user (provider 'feishu'), or a grant of an
-- external provider (an ad platform's API, declared in PIPELINE_MODULES). Tokens are stored
-- encrypted (Fernet, key from TOKEN_ENCRYPTION_KEY); only bot/tokens/store.py reads or writes them.
-- `generation` increases with every stored pair: writes are compare-and-swap on it, so a
-- refresh that lost a race can never overwrite a newer pair.
CREATE TABLE IF NOT EXISTS oauth_tokens (
    id                 INTEGER PRIMARY KEY,
    subject            VARCHAR(128) NOT NULL,
    display_name       VARCHAR(256) NOT NULL DEFAULT '',
    access_token       TEXT NOT NULL,
    refresh_token      TEXT,
    expires_at         TIMESTAMP NOT NULL,
    refresh_expires_at TIMESTAMP,
    scopes             TEXT NOT NULL DEFAULT '',
    last_refresh       TIMESTAMP,
    status             VARCHAR(24) NOT NULL DEFAULT 'active',
    generation         INTEGER NOT NULL DEFAULT 1,
    last_error         TEXT,
    created_at         TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at         TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    provider           VARCHAR(64) NOT NULL DEFAULT 'feishu',  -- whose grant: feishu, or a declared provider
    CONSTRAINT uq_oauth_tokens_provider_subject UNIQUE (provider, subject),
    CONSTRAINT ck_oauth_tokens_status CHECK (status IN ('active', 'reauth_required'))
);

-- Every refresh attempt and grant change, for `auth status` and post-mortems.
CREATE TABLE IF NOT EXISTS token_refreshes (
    id                INTEGER PRIMARY KEY,
    subject           VARCHAR(128) NOT NULL,
    at                TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    cause             VARCHAR(24) NOT NULL,  -- on_demand, proactive, expired_retry, manual, login, recovered
    outcome           VARCHAR(24) NOT NULL,
    error_code        INTEGER,
    error             TEXT,
    access_remaining_seconds  INTEGER,
    refresh_remaining_seconds INTEGER,
    provider          VARCHAR(64) NOT NULL DEFAULT 'feishu',
    CONSTRAINT ck_token_refreshes_outcome CHECK (
        outcome IN ('authorized', 'refreshed', 'transient_error', 'permanent_error', 'error', 'logged_out')
    )
);

CREATE INDEX IF NOT EXISTS ix_token_refreshes_provider_subject ON token_refreshes (provider, subject, at);

-- Operator alerts, raised once per condition (the key names the condition), delivered to the
-- admin chat by a job that retries until Feishu accepted them.
CREATE TABLE IF NOT EXISTS alerts (
    id         INTEGER PRIMARY KEY,
    key        VARCHAR(256) NOT NULL,
    kind       VARCHAR(64) NOT NULL,
    message    TEXT NOT NULL,
    raised_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    sent_at    TIMESTAMP,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    CONSTRAINT uq_alerts_key UNIQUE (key)
);

-- Caches of Feishu documents (bitables first). A source is one document the user asked to
-- mirror; its tables, fields and records are replaced or patched by syncs.
CREATE TABLE IF NOT EXISTS cache_sources (
    id               INTEGER PRIMARY KEY,
    name             VARCHAR(64) NOT NULL,
    kind             VARCHAR(16) NOT NULL,
    token            VARCHAR(512) NOT NULL,  -- as given: a URL or a token
    obj_token        VARCHAR(128),           -- the document itself (wiki nodes resolved)
    obj_type         VARCHAR(16),
    title            VARCHAR(256),
    interval_seconds INTEGER NOT NULL DEFAULT 3600,
    as_user          VARCHAR(128),           -- read as this user (open_id); NULL = as the app
    created_at       TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    status           VARCHAR(16) NOT NULL DEFAULT 'never',
    last_sync_at     TIMESTAMP,
    last_success_at  TIMESTAMP,
    last_duration_ms INTEGER,
    last_api_calls   INTEGER,
    last_error       TEXT,
    subscribed_at    TIMESTAMP,              -- when the bitable was subscribed to change events
    events_error     TEXT,                   -- why change events do not flow (subscribe refused)
    visibility       VARCHAR(16) NOT NULL DEFAULT 'chats',  -- who may read it in chat: allowed, owner, chats (none listed: admins' private chats)
    visible_chats    TEXT,                   -- JSON list of chat ids (visibility 'chats')
    CONSTRAINT uq_cache_sources_name UNIQUE (name),
    CONSTRAINT ck_cache_sources_kind CHECK (kind IN ('bitable', 'sheet', 'doc', 'wiki', 'wiki-space')),
    CONSTRAINT ck_cache_sources_status CHECK (status IN ('never', 'running', 'ok', 'failed')),
    CONSTRAINT ck_cache_sources_visibility CHECK (visibility IN ('allowed', 'owner', 'chats'))
);

CREATE TABLE IF NOT EXISTS cache_tables (
    id           INTEGER PRIMARY KEY,
    source_id    INTEGER NOT NULL REFERENCES cache_sources (id) ON DELETE CASCADE,
    table_id     VARCHAR(64) NOT NULL,
    name         VARCHAR(256) NOT NULL,
    revision     INTEGER,
    record_count INTEGER NOT NULL DEFAULT 0,
    field_count  INTEGER NOT NULL DEFAULT 0,
    synced_at    TIMESTAMP,              -- last full read of every record
    formulas_refreshed_at TIMESTAMP,     -- last re-read of formula/lookup columns (no events)
    CONSTRAINT uq_cache_tables UNIQUE (source_id, table_id)
);

CREATE TABLE IF NOT EXISTS cache_fields (
    id         INTEGER PRIMARY KEY,
    source_id  INTEGER NOT NULL REFERENCES cache_sources (id) ON DELETE CASCADE,
    table_id   VARCHAR(64) NOT NULL,
    field_id   VARCHAR(64) NOT NULL,
    name       VARCHAR(256) NOT NULL,
    type       INTEGER NOT NULL,
    ui_type    VARCHAR(32),
    property   TEXT,          -- JSON, as Feishu returns it
    is_primary BOOLEAN NOT NULL DEFAULT FALSE,
    position   INTEGER NOT NULL,
    CONSTRAINT uq_cache_fields UNIQUE (source_id, table_id, field_id)
);

-- `fields` is the record's JSON exactly as Feishu's records API returns it (keyed by field
-- name; every field type's value shape preserved).
CREATE TABLE IF NOT EXISTS cache_records (
    id          INTEGER PRIMARY KEY,
    source_id   INTEGER NOT NULL REFERENCES cache_sources (id) ON DELETE CASCADE,
    table_id    VARCHAR(64) NOT NULL,
    record_id   VARCHAR(64) NOT NULL,
    fields      TEXT NOT NULL,
    modified_ms BIGINT,
    synced_at   TIMESTAMP NOT NULL,
    CONSTRAINT uq_cache_records UNIQUE (source_id, table_id, record_id)
);

-- Spreadsheet sheets: every cell value, row-major, as Feishu's values API returns them.
CREATE TABLE IF NOT EXISTS cache_sheets (
    id           INTEGER PRIMARY KEY,
    source_id    INTEGER NOT NULL REFERENCES cache_sources (id) ON DELETE CASCADE,
    sheet_id     VARCHAR(64) NOT NULL,
    title        VARCHAR(256) NOT NULL,
    position     INTEGER NOT NULL,
    row_count    INTEGER NOT NULL,
    column_count INTEGER NOT NULL,
    cell_values  TEXT NOT NULL,  -- JSON: list of rows
    synced_at    TIMESTAMP NOT NULL,
    CONSTRAINT uq_cache_sheets UNIQUE (source_id, sheet_id)
);

-- Docx documents (one per doc source, or every doc under a wiki node): text and blocks.
CREATE TABLE IF NOT EXISTS cache_documents (
    id          INTEGER PRIMARY KEY,
    source_id   INTEGER NOT NULL REFERENCES cache_sources (id) ON DELETE CASCADE,
    document_id VARCHAR(64) NOT NULL,
    node_token  VARCHAR(64),
    title       VARCHAR(512) NOT NULL,
    raw_content TEXT NOT NULL,
    blocks      TEXT NOT NULL,  -- JSON: docx/v1 blocks
    synced_at   TIMESTAMP NOT NULL,
    CONSTRAINT uq_cache_documents UNIQUE (source_id, document_id)
);

-- Records named by change events and not yet re-fetched. One row per record however many
-- events named it (`version` counts them), so a burst becomes one batched fetch; a row is
-- removed only if its version is still the one that was fetched.
CREATE TABLE IF NOT EXISTS cache_pending (
    id        INTEGER PRIMARY KEY,
    source_id INTEGER NOT NULL REFERENCES cache_sources (id) ON DELETE CASCADE,
    table_id  VARCHAR(64) NOT NULL,
    record_id VARCHAR(64) NOT NULL,
    version   INTEGER NOT NULL DEFAULT 1,
    queued_at TIMESTAMP NOT NULL,
    CONSTRAINT uq_cache_pending UNIQUE (source_id, table_id, record_id)
);

-- Contract export (issue 5). Feishu Contract's export endpoint is authenticated by a browser
-- session: the curl the user copied is kept sealed (Fernet) in `export_auth` (one row).
-- Window bounds and record times are the contract tenant's wall-clock time (the endpoint is
-- called with Timezone-Offset -480, UTC+8), not UTC like the other timestamps.
CREATE TABLE IF NOT EXISTS export_auth (
    id           INTEGER PRIMARY KEY,
    sealed       TEXT NOT NULL,         -- JSON {url, headers, cookies, body}, encrypted
    fingerprint  VARCHAR(16) NOT NULL,  -- tells versions apart without showing secrets
    updated_at   TIMESTAMP NOT NULL,
    probed_at    TIMESTAMP,
    probe_ok     BOOLEAN,
    probe_detail TEXT
);

-- One bulk export: its range, options and where fresh ground starts (`cursor`).
CREATE TABLE IF NOT EXISTS export_runs (
    id           INTEGER PRIMARY KEY,
    status       VARCHAR(16) NOT NULL DEFAULT 'running',
    range_start  TIMESTAMP NOT NULL,
    range_end    TIMESTAMP NOT NULL,   -- exclusive
    options      TEXT NOT NULL,        -- JSON: cap, initial_days, fill, finer_bounds, filters …
    cursor_at    TIMESTAMP NOT NULL,
    density      REAL,                 -- records per second, smoothed over accepted windows
    calls        INTEGER NOT NULL DEFAULT 0,  -- export submissions the endpoint accepted
    count_calls  INTEGER NOT NULL DEFAULT 0,  -- list requests made to size windows
    pause_reason TEXT,
    created_at   TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at   TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    finished_at  TIMESTAMP,
    CONSTRAINT ck_export_runs_status CHECK (status IN ('running', 'paused', 'done', 'cancelled'))
);

-- A time window of a run. planned → submitted → awaiting_file → downloaded → verified, or
-- split (its file may be truncated; two children replace it), unexportable, failed.
CREATE TABLE IF NOT EXISTS export_windows (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES export_runs (id) ON DELETE CASCADE,
    parent_id       INTEGER,
    start_at        TIMESTAMP NOT NULL,
    end_at          TIMESTAMP NOT NULL,  -- exclusive
    state           VARCHAR(16) NOT NULL DEFAULT 'planned',
    attempts        INTEGER NOT NULL DEFAULT 0,  -- submissions the endpoint accepted
    failures        INTEGER NOT NULL DEFAULT 0,  -- consecutive failed submissions (backoff)
    serial          BOOLEAN NOT NULL DEFAULT FALSE,  -- submit alone (an ambiguous file named it)
    next_attempt_at TIMESTAMP,
    submitted_at    TIMESTAMP,
    rows            INTEGER,
    file_id         INTEGER,
    reason          TEXT,
    updated_at      TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT ck_export_windows_state CHECK (state IN ('planned', 'submitted', 'awaiting_file',
        'downloaded', 'verified', 'split', 'unexportable', 'failed'))
);

CREATE INDEX IF NOT EXISTS ix_export_windows_run ON export_windows (run_id, state);

-- A completion message and its file. `message_id` is unique: a message seen twice (event and
-- poll, re-delivery) is one row.
CREATE TABLE IF NOT EXISTS export_files (
    id           INTEGER PRIMARY KEY,
    message_id   VARCHAR(64) NOT NULL,
    chat_id      VARCHAR(64) NOT NULL,
    file_key     VARCHAR(256) NOT NULL,
    file_name    VARCHAR(512) NOT NULL,
    message_at   TIMESTAMP NOT NULL,
    seen_via     VARCHAR(8) NOT NULL,   -- event | poll
    state        VARCHAR(16) NOT NULL DEFAULT 'received',
    downloaded_via VARCHAR(8),          -- api | browser
    path         TEXT,
    size         BIGINT,
    sha256       VARCHAR(64),
    rows         INTEGER,
    min_created  TIMESTAMP,
    max_created  TIMESTAMP,
    window_id    INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    received_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at   TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT uq_export_files_message UNIQUE (message_id),
    CONSTRAINT ck_export_files_state CHECK (state IN ('received', 'downloaded', 'matched', 'duplicate',
        'stray', 'ambiguous', 'failed'))
);
-- A placed file is checked against the matched files with the same digest (revision 0002).
CREATE INDEX IF NOT EXISTS ix_export_files_sha256 ON export_files (sha256);

-- The merged export: one row per cooperation record, all columns as JSON (header → value).
CREATE TABLE IF NOT EXISTS contract_cooperation_records (
    record_id  VARCHAR(64) PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    data       TEXT NOT NULL,
    file_id    INTEGER,
    updated_at TIMESTAMP NOT NULL
);

CREATE INDEX IF NOT EXISTS ix_contract_cooperation_created ON contract_cooperation_records (created_at);

-- Coze sync (issue 6). A template names a table of this database, the fields to send and the
-- Coze workflow to call. Its triggers (installed by bot/coze/triggers.py, not here: they name
-- user tables) write one `coze_outbox` row per change in the same transaction as the change.
CREATE TABLE IF NOT EXISTS coze_sync_templates (
    id               INTEGER PRIMARY KEY,
    uuid             VARCHAR(36) NOT NULL,
    config_title     VARCHAR(200) NOT NULL,
    table_name       VARCHAR(128) NOT NULL,
    coze_workflow_id VARCHAR(128) NOT NULL,
    coze_api_url     VARCHAR(500) NOT NULL,
    coze_api_key     TEXT,                  -- sealed (Fernet); never shown unmasked
    selected_fields  TEXT NOT NULL,         -- JSON list of column names
    field_kinds      TEXT NOT NULL,         -- JSON {column: kind}, from the live schema
    key_fields       TEXT NOT NULL,         -- JSON list: the table's primary key columns
    sync_on_insert   BOOLEAN NOT NULL DEFAULT TRUE,
    sync_on_update   BOOLEAN NOT NULL DEFAULT TRUE,
    sync_on_delete   BOOLEAN NOT NULL DEFAULT FALSE,
    field_mapping    TEXT,                  -- JSON {rename, callable, operation_field}
    enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    status           VARCHAR(24) NOT NULL DEFAULT 'ACTIVE',
    status_detail    TEXT,
    last_sync_time   TIMESTAMP,
    created_by       VARCHAR(64),
    created_at       TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at       TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT uq_coze_sync_templates_uuid UNIQUE (uuid)
);

-- One change (or one row of a manual sync) waiting for, or done with, its Coze call. Rows of
-- one table row (`row_key`: its primary key values joined by U+001F) are delivered in id order:
-- a row is claimable only when no earlier row with the same key is undelivered (an update that
-- changed the key also waits for its old key's rows: `old_row_key`).
CREATE TABLE IF NOT EXISTS coze_outbox (
    id              INTEGER PRIMARY KEY,
    template_id     INTEGER NOT NULL REFERENCES coze_sync_templates(id) ON DELETE CASCADE,
    op              VARCHAR(8) NOT NULL,    -- insert, update, delete, sync (manual)
    row_key         TEXT NOT NULL,
    old_values      TEXT,                   -- JSON of the selected fields before the change
    new_values      TEXT,                   -- … and after it
    sync_id         INTEGER,                -- the manual sync that queued it
    status          VARCHAR(12) NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,  -- SQLite triggers rely on these
    claimed_at      TIMESTAMP,
    claim_token     VARCHAR(32),
    last_error      TEXT,
    created_at      TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,  -- two defaults (UTC on SQLite)
    delivered_at    TIMESTAMP,
    old_row_key     TEXT,                   -- an update that changed the key: the key before (0004)
    CONSTRAINT ck_coze_outbox_status CHECK (status IN ('pending', 'claimed', 'delivered', 'dead'))
);
-- One index serves the claim (pending rows), the per-row order check (undelivered rows of a key)
-- and the counts: every index is paid for by every trigger firing, so there is one, plus a
-- partial one that trigger rows (no sync_id) never enter.
CREATE INDEX IF NOT EXISTS ix_coze_outbox_state ON coze_outbox (status, template_id, row_key, id);
CREATE INDEX IF NOT EXISTS ix_coze_outbox_sync ON coze_outbox (sync_id) WHERE sync_id IS NOT NULL;
-- A key-changing update waits for its old key's rows, and later rows of that old key wait for it;
-- only key changes enter this one (revision 0004).
CREATE INDEX IF NOT EXISTS ix_coze_outbox_old_key ON coze_outbox (template_id, old_row_key, id)
    WHERE old_row_key IS NOT NULL;

-- Every Coze call, successful or not, with what Coze answered (kept after the outbox row is
-- cleaned up).
CREATE TABLE IF NOT EXISTS coze_deliveries (
    id            INTEGER PRIMARY KEY,
    outbox_id     INTEGER,
    template_uuid VARCHAR(36) NOT NULL,
    workflow_id   VARCHAR(128) NOT NULL,
    op            VARCHAR(8) NOT NULL,
    row_key       TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    ok            BOOLEAN NOT NULL,
    error_kind    VARCHAR(16),
    error_code    INTEGER,
    error         TEXT,
    execute_id    VARCHAR(128),
    debug_url     TEXT,
    logid         VARCHAR(128),
    duration_ms   INTEGER,
    created_at    TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_coze_deliveries_outbox ON coze_deliveries (outbox_id);
CREATE INDEX IF NOT EXISTS ix_coze_deliveries_template ON coze_deliveries (template_uuid, created_at);

-- A manual ("sync everything matching") request: its rows go through the outbox too.
CREATE TABLE IF NOT EXISTS coze_manual_syncs (
    id             INTEGER PRIMARY KEY,
    template_id    INTEGER NOT NULL REFERENCES coze_sync_templates(id) ON DELETE CASCADE,
    batch_size     INTEGER NOT NULL,
    filters        TEXT,                    -- JSON list of [column, operator, value]
    status         VARCHAR(12) NOT NULL DEFAULT 'queued',
    total_records  INTEGER,
    queued_records INTEGER NOT NULL DEFAULT 0,
    records_synced INTEGER,
    records_failed INTEGER,
    error          TEXT,
    created_at     TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    finished_at    TIMESTAMP,
    CONSTRAINT ck_coze_manual_syncs_status CHECK (status IN ('queued', 'queuing', 'delivering', 'done', 'failed'))
);

-- Chat commands (issue 7): every command a user typed, who, what and how it ended (the audit
-- trail; `message_id` is unique, so a re-delivered message is not run twice).
CREATE TABLE IF NOT EXISTS chat_commands (
    id          INTEGER PRIMARY KEY,
    message_id  VARCHAR(64) NOT NULL,
    chat_id     VARCHAR(64) NOT NULL,
    open_id     VARCHAR(64) NOT NULL,
    text        TEXT NOT NULL,
    command     VARCHAR(32),
    outcome     VARCHAR(12) NOT NULL,   -- received, ok, refused, usage, error
    detail      TEXT,
    created_at  TIMESTAMP NOT NULL,
    CONSTRAINT uq_chat_commands_message UNIQUE (message_id)
);
CREATE INDEX IF NOT EXISTS ix_chat_commands_created ON chat_commands (created_at);

-- Progress cards the bot sent, patched in place until their job ends.
CREATE TABLE IF NOT EXISTS chat_cards (
    id            INTEGER PRIMARY KEY,
    message_id    VARCHAR(64) NOT NULL,
    chat_id       VARCHAR(64) NOT NULL,
    kind          VARCHAR(16) NOT NULL,   -- export, coze_sync
    ref_id        INTEGER NOT NULL,       -- the export run / manual sync
    state         VARCHAR(8) NOT NULL DEFAULT 'live',
    content_hash  VARCHAR(64),
    updated_at    TIMESTAMP NOT NULL,
    finished_reason TEXT                  -- why Feishu refused further patches (recalled, too old)
);
CREATE INDEX IF NOT EXISTS ix_chat_cards_state ON chat_cards (state);

-- Pipelines (issue 17): a source (a Python callable or an SQL query) whose rows are upserted
-- into a bitable table by key, then read back and verified. `spec` is the definition as JSON
-- (bot/pipelines/spec.py); runs outlive their pipeline (they name it, no foreign key).
CREATE TABLE IF NOT EXISTS pipelines (
    id                INTEGER PRIMARY KEY,
    name              VARCHAR(64) NOT NULL,
    spec              TEXT NOT NULL,
    enabled           BOOLEAN NOT NULL DEFAULT TRUE,
    created_at        TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at        TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_scheduled_at TIMESTAMP,            -- the schedule slot a run was last started for
    covered_through   DATE,                 -- the latest day a run wrote (scheduled runs catch up from here)
    last_run_id       INTEGER,
    last_run_state    VARCHAR(12),
    last_run_at       TIMESTAMP,
    CONSTRAINT uq_pipelines_name UNIQUE (name),
    CONSTRAINT ck_pipelines_last_run_state CHECK (
        last_run_state IN ('queued', 'running', 'succeeded', 'failed')
    )
);

-- One run over days date_from..date_to (inclusive, in PIPELINE_TIMEZONE). At most one run of a
-- pipeline is queued or running (ux_pipeline_runs_active). A running run whose heartbeat went
-- quiet is resumed by the cron.
CREATE TABLE IF NOT EXISTS pipeline_runs (
    id           INTEGER PRIMARY KEY,
    pipeline     VARCHAR(64) NOT NULL,
    date_from    DATE NOT NULL,
    date_to      DATE NOT NULL,
    state        VARCHAR(12) NOT NULL DEFAULT 'queued',
    triggered_by VARCHAR(12) NOT NULL,     -- schedule, manual, chat
    fetched      INTEGER NOT NULL DEFAULT 0,  -- rows the source gave
    created      INTEGER NOT NULL DEFAULT 0,  -- records written to the table …
    updated      INTEGER NOT NULL DEFAULT 0,
    deleted      INTEGER NOT NULL DEFAULT 0,
    calls        INTEGER NOT NULL DEFAULT 0,  -- bitable API calls (reads included)
    summary      TEXT,                        -- JSON: verification per group, the result text
    error        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,  -- claims by a worker
    queued_at    TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    started_at   TIMESTAMP,
    finished_at  TIMESTAMP,
    heartbeat_at TIMESTAMP,
    not_before   TIMESTAMP,                   -- a retry's job is due then (not lost before)
    requested_by VARCHAR(64),                 -- open_id of whoever started it (chat, CLI)
    chat_id      VARCHAR(64),                 -- where its progress card lives
    message_id   VARCHAR(64),                 -- … and which message that card is
    CONSTRAINT ck_pipeline_runs_state CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    CONSTRAINT ck_pipeline_runs_triggered_by CHECK (triggered_by IN ('schedule', 'manual', 'chat')),
    CONSTRAINT ck_pipeline_runs_dates CHECK (date_from <= date_to)
);
CREATE INDEX IF NOT EXISTS ix_pipeline_runs_pipeline ON pipeline_runs (pipeline, id);
CREATE INDEX IF NOT EXISTS ix_pipeline_runs_state ON pipeline_runs (state, heartbeat_at);
CREATE UNIQUE INDEX IF NOT EXISTS ux_pipeline_runs_active ON pipeline_runs (pipeline)
    WHERE state IN ('queued', 'running');

-- A run's days: what the source gave for each (as bitable cell values), so a run killed after
-- fetching 60 of 90 days resumes without fetching them again.
CREATE TABLE IF NOT EXISTS pipeline_run_days (
    id           INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL REFERENCES pipeline_runs (id) ON DELETE CASCADE,
    day          DATE NOT NULL,
    state        VARCHAR(8) NOT NULL DEFAULT 'pending',
    row_count    INTEGER,
    fetched_rows TEXT,                     -- JSON list of {field: cell value}
    detail       TEXT,                     -- JSON: the groups the source expected, and those it could not fetch
    fetched_at   TIMESTAMP,
    CONSTRAINT uq_pipeline_run_days UNIQUE (run_id, day),
    CONSTRAINT ck_pipeline_run_days_state CHECK (state IN ('pending', 'fetched', 'written'))
);

-- ===== section: dialect: postgresql =====

-- PostgreSQL has no rowid: give each integer primary key a sequence-backed default.
CREATE SEQUENCE IF NOT EXISTS event_receipts_id_seq OWNED BY event_receipts.id;
ALTER TABLE event_receipts ALTER COLUMN id SET DEFAULT nextval('event_receipts_id_seq');
CREATE SEQUENCE IF NOT EXISTS oauth_tokens_id_seq OWNED BY oauth_tokens.id;
ALTER TABLE oauth_tokens ALTER COLUMN id SET DEFAULT nextval('oauth_tokens_id_seq');
CREATE SEQUENCE IF NOT EXISTS token_refreshes_id_seq OWNED BY token_refreshes.id;
ALTER TABLE token_refreshes ALTER COLUMN id SET DEFAULT nextval('token_refreshes_id_seq');
CREATE SEQUENCE IF NOT EXISTS alerts_id_seq OWNED BY alerts.id;
ALTER TABLE alerts ALTER COLUMN id SET DEFAULT nextval('alerts_id_seq');
CREATE SEQUENCE IF NOT EXISTS cache_sources_id_seq OWNED BY cache_sources.id;
ALTER TABLE cache_sources ALTER COLUMN id SET DEFAULT nextval('cache_sources_id_seq');
CREATE SEQUENCE IF NOT EXISTS cache_tables_id_seq OWNED BY cache_tables.id;
ALTER TABLE cache_tables ALTER COLUMN id SET DEFAULT nextval('cache_tables_id_seq');
CREATE SEQUENCE IF NOT EXISTS cache_fields_id_seq OWNED BY cache_fields.id;
ALTER TABLE cache_fields ALTER COLUMN id SET DEFAULT nextval('cache_fields_id_seq');
CREATE SEQUENCE IF NOT EXISTS cache_records_id_seq OWNED BY cache_records.id;
ALTER TABLE cache_records ALTER COLUMN id SET DEFAULT nextval('cache_records_id_seq');
CREATE SEQUENCE IF NOT EXISTS cache_sheets_id_seq OWNED BY cache_sheets.id;
ALTER TABLE cache_sheets ALTER COLUMN id SET DEFAULT nextval('cache_sheets_id_seq');
CREATE SEQUENCE IF NOT EXISTS cache_documents_id_seq OWNED BY cache_documents.id;
ALTER TABLE cache_documents ALTER COLUMN id SET DEFAULT nextval('cache_documents_id_seq');
CREATE SEQUENCE IF NOT EXISTS cache_pending_id_seq OWNED BY cache_pending.id;
ALTER TABLE cache_pending ALTER COLUMN id SET DEFAULT nextval('cache_pending_id_seq');
CREATE SEQUENCE IF NOT EXISTS export_auth_id_seq OWNED BY export_auth.id;
ALTER TABLE export_auth ALTER COLUMN id SET DEFAULT nextval('export_auth_id_seq');
CREATE SEQUENCE IF NOT EXISTS export_runs_id_seq OWNED BY export_runs.id;
ALTER TABLE export_runs ALTER COLUMN id SET DEFAULT nextval('export_runs_id_seq');
CREATE SEQUENCE IF NOT EXISTS export_windows_id_seq OWNED BY export_windows.id;
ALTER TABLE export_windows ALTER COLUMN id SET DEFAULT nextval('export_windows_id_seq');
CREATE SEQUENCE IF NOT EXISTS export_files_id_seq OWNED BY export_files.id;
ALTER TABLE export_files ALTER COLUMN id SET DEFAULT nextval('export_files_id_seq');

CREATE SEQUENCE IF NOT EXISTS coze_sync_templates_id_seq OWNED BY coze_sync_templates.id;
ALTER TABLE coze_sync_templates ALTER COLUMN id SET DEFAULT nextval('coze_sync_templates_id_seq');
CREATE SEQUENCE IF NOT EXISTS coze_outbox_id_seq OWNED BY coze_outbox.id;
ALTER TABLE coze_outbox ALTER COLUMN id SET DEFAULT nextval('coze_outbox_id_seq');
CREATE SEQUENCE IF NOT EXISTS coze_deliveries_id_seq OWNED BY coze_deliveries.id;
ALTER TABLE coze_deliveries ALTER COLUMN id SET DEFAULT nextval('coze_deliveries_id_seq');
CREATE SEQUENCE IF NOT EXISTS chat_commands_id_seq OWNED BY chat_commands.id;
ALTER TABLE chat_commands ALTER COLUMN id SET DEFAULT nextval('chat_commands_id_seq');
CREATE SEQUENCE IF NOT EXISTS chat_cards_id_seq OWNED BY chat_cards.id;
ALTER TABLE chat_cards ALTER COLUMN id SET DEFAULT nextval('chat_cards_id_seq');
CREATE SEQUENCE IF NOT EXISTS coze_manual_syncs_id_seq OWNED BY coze_manual_syncs.id;
ALTER TABLE coze_manual_syncs ALTER COLUMN id SET DEFAULT nextval('coze_manual_syncs_id_seq');
CREATE SEQUENCE IF NOT EXISTS pipelines_id_seq OWNED BY pipelines.id;
ALTER TABLE pipelines ALTER COLUMN id SET DEFAULT nextval('pipelines_id_seq');
CREATE SEQUENCE IF NOT EXISTS pipeline_runs_id_seq OWNED BY pipeline_runs.id;
ALTER TABLE pipeline_runs ALTER COLUMN id SET DEFAULT nextval('pipeline_runs_id_seq');
CREATE SEQUENCE IF NOT EXISTS pipeline_run_days_id_seq OWNED BY pipeline_run_days.id;
ALTER TABLE pipeline_run_days ALTER COLUMN id SET DEFAULT nextval('pipeline_run_days_id_seq');

-- The Coze sync triggers wake the dispatcher once per statement (NOTIFY is sent on commit,
-- dropped on rollback, and collapsed within a transaction; the dispatcher also polls). The
-- per-row capture functions are generated per template by bot/coze/triggers.py.
CREATE OR REPLACE FUNCTION coze_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('coze_outbox', TG_ARGV[0]);
    RETURN NULL;
END
$$;

-- ===== section: dialect: sqlite =====

-- (nothing yet: SQLite's INTEGER PRIMARY KEY already autoincrements)
