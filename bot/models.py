"""Typed SQLAlchemy models mirroring schema.sql (which stays the source of truth)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
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
