"""Typed SQLAlchemy models mirroring schema.sql (which stays the source of truth)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Stored naive in UTC (portable TIMESTAMP), handed to Python as an aware UTC datetime."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


RECEIPT_STATUSES = ("received", "queued", "processing", "done", "failed", "unhandled")


class EventReceipt(Base):
    """A Feishu event we acknowledged; the durable record behind each event job."""

    __tablename__ = "event_receipts"
    __table_args__ = (
        UniqueConstraint("event_id", name="uq_event_receipts_event_id"),
        CheckConstraint(
            "status IN ('received', 'queued', 'processing', 'done', 'failed', 'unhandled')",
            name="ck_event_receipts_status",
        ),
        Index("ix_event_receipts_status", "status", "received_at"),
        Index("ix_event_receipts_type", "event_type", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(128))
    schema_version: Mapped[str] = mapped_column(String(8), server_default=text("'2.0'"))
    received_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=text("CURRENT_TIMESTAMP")
    )
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'received'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(64))


class OAuthToken(Base):
    """An OAuth grant: a Feishu user's (provider 'feishu') or an external provider's. Token columns
    hold ciphertext; only bot.tokens.store touches them."""

    __tablename__ = "oauth_tokens"
    __table_args__ = (
        UniqueConstraint("provider", "subject", name="uq_oauth_tokens_provider_subject"),
        CheckConstraint("status IN ('active', 'reauth_required')", name="ck_oauth_tokens_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str] = mapped_column(String(256), server_default=text("''"))
    access_token: Mapped[str] = mapped_column(Text)
    refresh_token: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    refresh_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scopes: Mapped[str] = mapped_column(Text, server_default=text("''"))
    last_refresh: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(24), server_default=text("'active'"))
    generation: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    provider: Mapped[str] = mapped_column(String(64), server_default=text("'feishu'"))


class TokenRefresh(Base):
    """One refresh attempt or grant change (history for `auth status`)."""

    __tablename__ = "token_refreshes"
    __table_args__ = (
        CheckConstraint(
            "outcome IN ('authorized', 'refreshed', 'transient_error', 'permanent_error', 'error', "
            "'logged_out')",
            name="ck_token_refreshes_outcome",
        ),
        Index("ix_token_refreshes_provider_subject", "provider", "subject", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    cause: Mapped[str] = mapped_column(String(24))
    outcome: Mapped[str] = mapped_column(String(24))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    access_remaining_seconds: Mapped[int | None] = mapped_column(Integer)
    refresh_remaining_seconds: Mapped[int | None] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(64), server_default=text("'feishu'"))


class Alert(Base):
    """An operator alert: raised once per condition (its key), sent to the admin chat."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("key", name="uq_alerts_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)


class CacheSource(Base):
    """A Feishu document the user asked to mirror, and how its last sync went."""

    __tablename__ = "cache_sources"
    __table_args__ = (
        UniqueConstraint("name", name="uq_cache_sources_name"),
        CheckConstraint("kind IN ('bitable', 'sheet', 'doc', 'wiki', 'wiki-space')",
                        name="ck_cache_sources_kind"),
        CheckConstraint("status IN ('never', 'running', 'ok', 'failed')", name="ck_cache_sources_status"),
        CheckConstraint("visibility IN ('allowed', 'owner', 'chats')", name="ck_cache_sources_visibility"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    token: Mapped[str] = mapped_column(String(512))
    obj_token: Mapped[str | None] = mapped_column(String(128))
    obj_type: Mapped[str | None] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(String(256))
    interval_seconds: Mapped[int] = mapped_column(Integer, server_default=text("3600"))
    as_user: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'never'"))
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_duration_ms: Mapped[int | None] = mapped_column(Integer)
    last_api_calls: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    subscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    events_error: Mapped[str | None] = mapped_column(Text)
    # who may read it in chat (bot/caches/visibility.py): allowed, owner or chats
    # the default fails closed (admins' private chats); add_source always sets it
    visibility: Mapped[str] = mapped_column(String(16), server_default=text("'chats'"))
    visible_chats: Mapped[str | None] = mapped_column(Text)  # JSON list of chat ids, for 'chats'


class CacheTable(Base):
    __tablename__ = "cache_tables"
    __table_args__ = (UniqueConstraint("source_id", "table_id", name="uq_cache_tables"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(Integer, ForeignKey("cache_sources.id", ondelete="CASCADE"))
    table_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(256))
    revision: Mapped[int | None] = mapped_column(Integer)
    record_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    field_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    formulas_refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CacheField(Base):
    __tablename__ = "cache_fields"
    __table_args__ = (UniqueConstraint("source_id", "table_id", "field_id", name="uq_cache_fields"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(Integer, ForeignKey("cache_sources.id", ondelete="CASCADE"))
    table_id: Mapped[str] = mapped_column(String(64))
    field_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(256))
    type: Mapped[int] = mapped_column(Integer)
    ui_type: Mapped[str | None] = mapped_column(String(32))
    property: Mapped[str | None] = mapped_column(Text)
    is_primary: Mapped[bool] = mapped_column(Boolean, server_default=text("FALSE"))
    position: Mapped[int] = mapped_column(Integer)


class CacheRecord(Base):
    """One bitable record; `fields` is the JSON Feishu returned, value shapes untouched."""

    __tablename__ = "cache_records"
    __table_args__ = (UniqueConstraint("source_id", "table_id", "record_id", name="uq_cache_records"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(Integer, ForeignKey("cache_sources.id", ondelete="CASCADE"))
    table_id: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str] = mapped_column(String(64))
    fields: Mapped[str] = mapped_column(Text)
    modified_ms: Mapped[int | None] = mapped_column(BigInteger)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CachePending(Base):
    """A record named by change events, waiting to be re-fetched."""

    __tablename__ = "cache_pending"
    __table_args__ = (UniqueConstraint("source_id", "table_id", "record_id", name="uq_cache_pending"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(Integer, ForeignKey("cache_sources.id", ondelete="CASCADE"))
    table_id: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CacheSheet(Base):
    __tablename__ = "cache_sheets"
    __table_args__ = (UniqueConstraint("source_id", "sheet_id", name="uq_cache_sheets"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(Integer, ForeignKey("cache_sources.id", ondelete="CASCADE"))
    sheet_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(256))
    position: Mapped[int] = mapped_column(Integer)
    row_count: Mapped[int] = mapped_column(Integer)
    column_count: Mapped[int] = mapped_column(Integer)
    cell_values: Mapped[str] = mapped_column(Text)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CacheDocument(Base):
    __tablename__ = "cache_documents"
    __table_args__ = (UniqueConstraint("source_id", "document_id", name="uq_cache_documents"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(Integer, ForeignKey("cache_sources.id", ondelete="CASCADE"))
    document_id: Mapped[str] = mapped_column(String(64))
    node_token: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(512))
    raw_content: Mapped[str] = mapped_column(Text)
    blocks: Mapped[str] = mapped_column(Text)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime)


# -- contract export: bounds and record times are contract-local wall-clock (plain DateTime) --

EXPORT_RUN_STATUSES = ("running", "paused", "done", "cancelled")
WINDOW_STATES = ("planned", "submitted", "awaiting_file", "downloaded", "verified", "split",
                 "unexportable", "failed")
FILE_STATES = ("received", "downloaded", "matched", "duplicate", "stray", "ambiguous", "failed")


class ExportAuth(Base):
    """The browser session copied from a curl, sealed; one row."""

    __tablename__ = "export_auth"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sealed: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    probed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    probe_ok: Mapped[bool | None] = mapped_column(Boolean)
    probe_detail: Mapped[str | None] = mapped_column(Text)


class ExportRun(Base):
    __tablename__ = "export_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'paused', 'done', 'cancelled')", name="ck_export_runs_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'running'"))
    range_start: Mapped[datetime] = mapped_column(DateTime)
    range_end: Mapped[datetime] = mapped_column(DateTime)
    options: Mapped[str] = mapped_column(Text)
    cursor_at: Mapped[datetime] = mapped_column(DateTime)
    density: Mapped[float | None] = mapped_column(Float)
    calls: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    count_calls: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    pause_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ExportWindow(Base):
    __tablename__ = "export_windows"
    __table_args__ = (
        CheckConstraint(
            "state IN ('planned', 'submitted', 'awaiting_file', 'downloaded', 'verified', 'split', "
            "'unexportable', 'failed')",
            name="ck_export_windows_state",
        ),
        Index("ix_export_windows_run", "run_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(Integer, ForeignKey("export_runs.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(Integer)
    start_at: Mapped[datetime] = mapped_column(DateTime)
    end_at: Mapped[datetime] = mapped_column(DateTime)
    state: Mapped[str] = mapped_column(String(16), server_default=text("'planned'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    serial: Mapped[bool] = mapped_column(Boolean, server_default=text("FALSE"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rows: Mapped[int | None] = mapped_column(Integer)
    file_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))


class ExportFile(Base):
    """A completion message and the file it carries."""

    __tablename__ = "export_files"
    __table_args__ = (
        UniqueConstraint("message_id", name="uq_export_files_message"),
        CheckConstraint(
            "state IN ('received', 'downloaded', 'matched', 'duplicate', 'stray', 'ambiguous', 'failed')",
            name="ck_export_files_state",
        ),
        Index("ix_export_files_sha256", "sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(String(64))
    file_key: Mapped[str] = mapped_column(String(256))
    file_name: Mapped[str] = mapped_column(String(512))
    message_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_via: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16), server_default=text("'received'"))
    downloaded_via: Mapped[str | None] = mapped_column(String(8))
    path: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    rows: Mapped[int | None] = mapped_column(Integer)
    min_created: Mapped[datetime | None] = mapped_column(DateTime)
    max_created: Mapped[datetime | None] = mapped_column(DateTime)
    window_id: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))


class CooperationRecord(Base):
    """One merged cooperation record; `data` maps the export's column headers to values."""

    __tablename__ = "contract_cooperation_records"
    __table_args__ = (Index("ix_contract_cooperation_created", "created_at"),)

    record_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    data: Mapped[str] = mapped_column(Text)
    file_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


OUTBOX_STATUSES = ("pending", "claimed", "delivered", "dead")


class CozeTemplate(Base):
    """Which table's changes go to which Coze workflow, and how."""

    __tablename__ = "coze_sync_templates"
    __table_args__ = (UniqueConstraint("uuid", name="uq_coze_sync_templates_uuid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36))
    config_title: Mapped[str] = mapped_column(String(200))
    table_name: Mapped[str] = mapped_column(String(128))
    coze_workflow_id: Mapped[str] = mapped_column(String(128))
    coze_api_url: Mapped[str] = mapped_column(String(500))
    coze_api_key: Mapped[str | None] = mapped_column(Text)
    selected_fields: Mapped[str] = mapped_column(Text)
    field_kinds: Mapped[str] = mapped_column(Text)
    key_fields: Mapped[str] = mapped_column(Text)
    sync_on_insert: Mapped[bool] = mapped_column(Boolean, server_default=text("TRUE"))
    sync_on_update: Mapped[bool] = mapped_column(Boolean, server_default=text("TRUE"))
    sync_on_delete: Mapped[bool] = mapped_column(Boolean, server_default=text("FALSE"))
    field_mapping: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("TRUE"))
    status: Mapped[str] = mapped_column(String(24), server_default=text("'ACTIVE'"))
    status_detail: Mapped[str | None] = mapped_column(Text)
    last_sync_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))


class CozeOutbox(Base):
    """One change waiting for (or done with) its Coze call; written by the table's triggers."""

    __tablename__ = "coze_outbox"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'claimed', 'delivered', 'dead')", name="ck_coze_outbox_status"
        ),
        Index("ix_coze_outbox_state", "status", "template_id", "row_key", "id"),
        # Partial in schema.sql (WHERE sync_id IS NOT NULL). The models never create tables, and
        # a `postgresql_where` here would load the PostgreSQL dialect into every CLI command.
        Index("ix_coze_outbox_sync", "sync_id"),
        Index("ix_coze_outbox_old_key", "template_id", "old_row_key", "id"),  # partial too (schema.sql)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    template_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("coze_sync_templates.id", ondelete="CASCADE")
    )
    op: Mapped[str] = mapped_column(String(8))
    row_key: Mapped[str] = mapped_column(Text)
    old_values: Mapped[str | None] = mapped_column(Text)
    new_values: Mapped[str | None] = mapped_column(Text)
    sync_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    old_row_key: Mapped[str | None] = mapped_column(Text)  # set only by an update that changed the key


class CozeDelivery(Base):
    """One Coze workflow call and its answer (execute_id, debug_url, logid) or error."""

    __tablename__ = "coze_deliveries"
    __table_args__ = (
        Index("ix_coze_deliveries_outbox", "outbox_id"),
        Index("ix_coze_deliveries_template", "template_uuid", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbox_id: Mapped[int | None] = mapped_column(Integer)
    template_uuid: Mapped[str] = mapped_column(String(36))
    workflow_id: Mapped[str] = mapped_column(String(128))
    op: Mapped[str] = mapped_column(String(8))
    row_key: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    ok: Mapped[bool] = mapped_column(Boolean)
    error_kind: Mapped[str | None] = mapped_column(String(16))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    execute_id: Mapped[str | None] = mapped_column(String(128))
    debug_url: Mapped[str | None] = mapped_column(Text)
    logid: Mapped[str | None] = mapped_column(String(128))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CozeManualSync(Base):
    """A request to send every matching row of a template's table."""

    __tablename__ = "coze_manual_syncs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'queuing', 'delivering', 'done', 'failed')",
            name="ck_coze_manual_syncs_status",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    template_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("coze_sync_templates.id", ondelete="CASCADE")
    )
    batch_size: Mapped[int] = mapped_column(Integer)
    filters: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), server_default=text("'queued'"))
    total_records: Mapped[int | None] = mapped_column(Integer)
    queued_records: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    records_synced: Mapped[int | None] = mapped_column(Integer)
    records_failed: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChatCommand(Base):
    """One chat command: the audit trail (who, what, when, outcome)."""

    __tablename__ = "chat_commands"
    __table_args__ = (
        UniqueConstraint("message_id", name="uq_chat_commands_message"),
        Index("ix_chat_commands_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(String(64))
    open_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    command: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(12))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChatCard(Base):
    """A progress card the bot sent and keeps patching until its job ends."""

    __tablename__ = "chat_cards"
    __table_args__ = (Index("ix_chat_cards_state", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    ref_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(8), server_default=text("'live'"))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_reason: Mapped[str | None] = mapped_column(Text)


# -- pipelines (issue 17): a source's rows upserted into a bitable table, read back, verified --

PIPELINE_RUN_STATES = ("queued", "running", "succeeded", "failed")
PIPELINE_TRIGGERS = ("schedule", "manual", "chat")
PIPELINE_DAY_STATES = ("pending", "fetched", "written")


class Pipeline(Base):
    """A pipeline's definition (`spec`: bot/pipelines/spec.py as JSON) and its last run."""

    __tablename__ = "pipelines"
    __table_args__ = (
        UniqueConstraint("name", name="uq_pipelines_name"),
        CheckConstraint("last_run_state IN ('queued', 'running', 'succeeded', 'failed')",
                        name="ck_pipelines_last_run_state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    spec: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("TRUE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    last_scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    covered_through: Mapped[date | None] = mapped_column(Date)
    last_run_id: Mapped[int | None] = mapped_column(Integer)
    last_run_state: Mapped[str | None] = mapped_column(String(12))
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PipelineRun(Base):
    """One run of a pipeline over days `date_from`..`date_to` (inclusive, pipeline time zone)."""

    __tablename__ = "pipeline_runs"
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'running', 'succeeded', 'failed')",
                        name="ck_pipeline_runs_state"),
        CheckConstraint("triggered_by IN ('schedule', 'manual', 'chat')",
                        name="ck_pipeline_runs_triggered_by"),
        CheckConstraint("date_from <= date_to", name="ck_pipeline_runs_dates"),
        Index("ix_pipeline_runs_pipeline", "pipeline", "id"),
        Index("ix_pipeline_runs_state", "state", "heartbeat_at"),
        # Partial in schema.sql (WHERE state IN ('queued', 'running')): one active run per pipeline.
        Index("ux_pipeline_runs_active", "pipeline", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(64))
    date_from: Mapped[date] = mapped_column(Date)
    date_to: Mapped[date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(12), server_default=text("'queued'"))
    triggered_by: Mapped[str] = mapped_column(String(12))
    fetched: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    updated: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    deleted: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    calls: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    summary: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=text("CURRENT_TIMESTAMP"))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a retry's job is due then
    requested_by: Mapped[str | None] = mapped_column(String(64))
    chat_id: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(64))


class PipelineRunDay(Base):
    """One day of a run: what the source gave for it (as bitable cells), kept so a resumed run
    does not fetch it again."""

    __tablename__ = "pipeline_run_days"
    __table_args__ = (
        UniqueConstraint("run_id", "day", name="uq_pipeline_run_days"),
        CheckConstraint("state IN ('pending', 'fetched', 'written')", name="ck_pipeline_run_days_state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(Integer, ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(8), server_default=text("'pending'"))
    row_count: Mapped[int | None] = mapped_column(Integer)
    fetched_rows: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
