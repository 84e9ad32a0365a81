"""Durable event receipts: record once, claim once, finish or fail, and find the abandoned."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.orm import Session

from bot.models import EventReceipt, UTCDateTime, utcnow

if TYPE_CHECKING:
    from bot.intake.parse import ParsedEvent


class NewReceipt(NamedTuple):
    event: ParsedEvent
    status: str = "received"  # or "unhandled": authentic, but no handler for its type
    job_id: str | None = None  # the job that will carry it (None: no job)


def record(engine: Engine, event: ParsedEvent, *, status: str = "received", job_id: str | None = None
           ) -> int | None:
    """Insert one receipt; None when this event_id was recorded before (a re-delivery)."""
    return record_many(engine, [NewReceipt(event, status, job_id)]).get(event.event_id)


_RECORD_COLUMNS = ("event_id", "event_type", "schema_version", "received_at", "payload", "status", "job_id")


@functools.cache
def _record_many_sql(dialect: str, rows: int) -> str:
    # The webhook's hot path: a plain multi-row INSERT, built once per batch size, saves the
    # SQL compilation SQLAlchemy would repeat for every batch. Only constants go into it;
    # every value is a bound parameter.
    mark = "?" if dialect == "sqlite" else "%s"
    row = "(" + ", ".join([mark] * len(_RECORD_COLUMNS)) + ")"
    return (
        f"INSERT INTO event_receipts ({', '.join(_RECORD_COLUMNS)}) VALUES "
        + ", ".join([row] * rows)
        + " ON CONFLICT (event_id) DO NOTHING RETURNING event_id, id"
    )


def record_many(engine: Engine, events: Sequence[NewReceipt]) -> dict[str, int]:
    """Insert many receipts in one transaction (event ids must be distinct).
    Returns event_id → receipt id for the new ones; re-deliveries are absent."""
    if not events:
        return {}
    received_at = UTCDateTime().process_bind_param(utcnow(), engine.dialect)
    if engine.dialect.name == "sqlite":
        received_at = received_at.strftime("%Y-%m-%d %H:%M:%S.%f")  # how SQLAlchemy stores it
    params: list = []
    for event, status, job_id in events:
        payload = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"))
        params += [event.event_id, event.event_type, event.schema_version, received_at, payload, status,
                   job_id]
    sql = _record_many_sql(engine.dialect.name, len(events))
    with engine.begin() as conn:
        return dict(conn.exec_driver_sql(sql, tuple(params)).all())


@dataclass(frozen=True)
class Claimed:
    id: int
    event_id: str
    event_type: str
    payload: dict
    attempts: int


CLAIMABLE = ("received", "queued", "failed")


def claim(engine: Engine, receipt_id: int, lease: timedelta) -> Claimed | None:
    """Atomically mark a receipt as being processed. None if it is done or held by a live claim,
    so two jobs for one receipt never both run its handler."""
    now = utcnow()
    stale = now - lease
    stmt = (
        update(EventReceipt)
        .where(EventReceipt.id == receipt_id)
        .where(
            or_(
                EventReceipt.status.in_(CLAIMABLE),
                and_(EventReceipt.status == "processing", EventReceipt.claimed_at < stale),
            )
        )
        .values(status="processing", claimed_at=now, attempts=EventReceipt.attempts + 1)
        .returning(
            EventReceipt.id, EventReceipt.event_id, EventReceipt.event_type,
            EventReceipt.payload, EventReceipt.attempts,
        )
    )
    with engine.begin() as conn:
        row = conn.execute(stmt).first()
    if row is None:
        return None
    return Claimed(row.id, row.event_id, row.event_type, json.loads(row.payload), row.attempts)


def finish(engine: Engine, receipt_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(EventReceipt)
            .where(EventReceipt.id == receipt_id)
            .values(status="done", processed_at=utcnow(), last_error=None)
        )


def fail(engine: Engine, receipt_id: int, error: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(EventReceipt)
            .where(EventReceipt.id == receipt_id)
            .values(status="failed", last_error=error[:4000])
        )


def abandoned(engine: Engine, *, older_than: timedelta, lease: timedelta, max_attempts: int,
              limit: int = 500) -> Sequence:
    """Receipts still waiting after a grace period (never enqueued because Redis was down, or their
    job was lost), claimed by a worker that died, or failed with attempts left (their retry is
    lost if Redis was down when the job failed). The sweeper skips those whose job is alive."""
    now = utcnow()
    stmt = (
        select(EventReceipt.id, EventReceipt.job_id)
        .where(
            or_(
                and_(EventReceipt.status.in_(("received", "queued")),
                     EventReceipt.received_at < now - older_than),
                and_(EventReceipt.status == "processing", EventReceipt.claimed_at < now - lease),
                and_(EventReceipt.status == "failed", EventReceipt.attempts < max_attempts,
                     EventReceipt.received_at < now - older_than),
            )
        )
        .order_by(EventReceipt.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return conn.execute(stmt).all()


def assign_job(engine: Engine, receipt_ids: Sequence[int], job_id: str) -> None:
    """Point receipts at the job that now carries them (the sweeper's re-enqueue)."""
    with engine.begin() as conn:
        conn.execute(update(EventReceipt).where(EventReceipt.id.in_(receipt_ids)).values(job_id=job_id))


def counts_by_status(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(EventReceipt.status, func.count()).group_by(EventReceipt.status)
        ).all()
    return {status: n for status, n in rows}


def latest(engine: Engine, limit: int = 20) -> list[EventReceipt]:
    with Session(engine) as session:
        return list(session.scalars(select(EventReceipt).order_by(EventReceipt.id.desc()).limit(limit)))

