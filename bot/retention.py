"""Retention: the tables and files that only grow are trimmed by one periodic job.

One policy per table — which rows may go (only finished ones) and after how long (a setting).
Rows go in bounded batches, each its own short transaction, so a large backlog never holds a
long write lock (SQLite has one writer; the webhook records receipts through it). Export
archives go only when their run finished longer ago than the retention: a running or paused
run's files are never touched, and a file another kept run still names stays.

Receipts are the webhook's de-duplication memory: they must outlive Feishu's re-delivery span
(≈ 7.1 h) and any replay the timestamp window lets in, so the settings refuse a shorter
retention (`Settings._retention_covers_replays`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, ColumnElement, Engine, Table, delete, func, select, true, update

from bot.models import (
    ChatCommand,
    CozeOutbox,
    EventReceipt,
    ExportFile,
    ExportRun,
    ExportWindow,
    Pipeline,
    PipelineRun,
    TokenRefresh,
    utcnow,
)

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.services import Services

log = logging.getLogger(__name__)

EXPORT_ARCHIVES = "export_archives"
FINISHED_RUNS = ("done", "cancelled")


@dataclass(frozen=True)
class Policy:
    """Rows of `table` whose `stamp` is older than the retention and that match `finished`."""

    table: Table
    stamp: Column
    finished: ColumnElement[bool]
    days: str  # the Settings attribute holding the retention in days (≤ 0: keep forever)


def _t(model) -> Table:
    return model.__table__


POLICIES: tuple[Policy, ...] = (
    # pending work (received/queued/processing) is never deleted, however old
    Policy(_t(EventReceipt), _t(EventReceipt).c.received_at,
           _t(EventReceipt).c.status.in_(("done", "unhandled", "failed")), "event_receipt_retention_days"),
    # undelivered (pending, claimed, dead) rows hold a table row's order: never deleted
    Policy(_t(CozeOutbox), _t(CozeOutbox).c.delivered_at,
           _t(CozeOutbox).c.status == "delivered", "coze_retention_days"),
    Policy(_t(ChatCommand), _t(ChatCommand).c.created_at, true(), "chat_command_retention_days"),
    Policy(_t(TokenRefresh), _t(TokenRefresh).c.at, true(), "token_refresh_retention_days"),
    # finished runs only, and never the one a pipeline names as its last (the dashboard shows it);
    # their pipeline_run_days go with them (ON DELETE CASCADE)
    Policy(_t(PipelineRun), _t(PipelineRun).c.finished_at,
           _t(PipelineRun).c.state.in_(("succeeded", "failed"))
           & _t(PipelineRun).c.id.not_in(select(_t(Pipeline).c.last_run_id)
                                         .where(_t(Pipeline).c.last_run_id.is_not(None))),
           "pipeline_run_retention_days"),
)


def cutoff(now: datetime, days: float) -> datetime | None:
    """The moment before which rows may go; None when the retention is off (≤ 0 days)."""
    return now - timedelta(days=days) if days > 0 else None


def purge_batches(engine: Engine, policy: Policy, before: datetime, batch_size: int,
                  max_batches: int) -> Iterator[int]:
    """Delete expired rows, at most `batch_size` per transaction; yields each batch's count.
    Stops when a batch comes back short, or after `max_batches` (the next run goes on)."""
    table = policy.table
    for _ in range(max_batches):
        ids = (
            select(table.c.id)
            .where(policy.finished, policy.stamp < before)
            .order_by(table.c.id)
            .limit(batch_size)
        )
        with engine.begin() as connection:
            chosen = [row[0] for row in connection.execute(ids)]
            if chosen:
                connection.execute(delete(table).where(table.c.id.in_(chosen)))
        yield len(chosen)
        if len(chosen) < batch_size:
            return


def expired_archives(engine: Engine, before: datetime, limit: int) -> list[tuple[int, str]]:
    """(file id, path) of files on disk whose run finished before `before`, minus any path a
    kept file still names (archive names are by date range: a later run can reuse one)."""
    files, windows, runs = _t(ExportFile), _t(ExportWindow), _t(ExportRun)
    of_run = files.join(windows, windows.c.id == files.c.window_id).join(runs, runs.c.id == windows.c.run_id)
    old_run = runs.c.status.in_(FINISHED_RUNS) & (runs.c.finished_at < before)
    kept_paths = (
        select(files.c.path).select_from(of_run).where(files.c.path.is_not(None), ~old_run)
        .union(select(files.c.path).where(files.c.path.is_not(None), files.c.window_id.is_(None)))
    )
    query = (
        select(files.c.id, files.c.path).select_from(of_run)
        .where(files.c.path.is_not(None), old_run, files.c.path.not_in(kept_paths))
        .order_by(files.c.id).limit(limit)
    )
    with engine.connect() as connection:
        return [(row.id, row.path) for row in connection.execute(query)]


def purge_archives(engine: Engine, archive_dir: Path, before: datetime, batch_size: int) -> int:
    """Remove expired archive files (only under `archive_dir`) and forget their paths; the
    export_files rows stay, as the record of what arrived."""
    root = archive_dir.resolve()
    expired = expired_archives(engine, before, batch_size)
    removed = 0
    for file_id, path in expired:
        target = Path(path).resolve()
        if target.is_relative_to(root):
            target.unlink(missing_ok=True)
            removed += 1
        else:
            log.warning("export file outside the archive left in place", extra={"path": path})
        with engine.begin() as connection:
            connection.execute(update(_t(ExportFile)).where(_t(ExportFile).c.id == file_id)
                               .values(path=None, updated_at=utcnow()))
    return removed


def oldest_ages(engine: Engine, now: datetime) -> dict[str, float]:
    """Age in seconds of each table's oldest row (0 when empty), for the /metrics gauge."""
    ages: dict[str, float] = {}
    with engine.connect() as connection:
        for policy in POLICIES:
            oldest = connection.scalar(select(func.min(policy.stamp)))
            if isinstance(oldest, str):  # SQLite hands an aggregate back untyped
                oldest = datetime.fromisoformat(oldest)
            if oldest is not None and oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=now.tzinfo)
            ages[policy.table.name] = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    return ages


def apply(engine: Engine, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Run every policy once; returns rows (files, for archives) deleted per table."""
    from bot.metrics import RETENTION_DELETED, RETENTION_OLDEST_AGE

    now = now or utcnow()
    batch, batches = settings.retention_batch_size, settings.retention_max_batches
    deleted: dict[str, int] = {}
    for policy in POLICIES:
        before = cutoff(now, getattr(settings, policy.days))
        count = sum(purge_batches(engine, policy, before, batch, batches)) if before else 0
        deleted[policy.table.name] = count
    before = cutoff(now, settings.export_archive_retention_days)
    deleted[EXPORT_ARCHIVES] = (
        purge_archives(engine, settings.effective_archive_dir, before, batch) if before else 0
    )
    for table, count in deleted.items():
        RETENTION_DELETED.labels(table).inc(count)
    for table, age in oldest_ages(engine, now).items():
        RETENTION_OLDEST_AGE.labels(table).set(age)
    if any(deleted.values()):
        log.info("retention applied", extra={f"deleted_{k}": v for k, v in deleted.items()})
    return deleted


def run(services: Services) -> dict[str, int]:
    return apply(services.engine, services.settings)
