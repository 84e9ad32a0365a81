"""Coze jobs: drain the outbox, queue a manual sync's rows, and the cron's wake-up (delivered rows
are trimmed by jobs.retention)."""

from __future__ import annotations

import logging

from rq import get_current_job

from bot.coze import manual, schedule
from bot.coze.dispatch import drain
from bot.services import current
from jobs.timing import instrumented

log = logging.getLogger(__name__)


@instrumented("dispatch_coze_outbox")
def dispatch_coze_outbox() -> dict[str, int]:
    services = current()
    schedule.dispatcher_started(services)
    totals = drain(services)
    if totals:
        log.info("coze outbox dispatched", extra=totals)
    return totals


@instrumented("coze_manual_sync")
def coze_manual_sync(sync_id: int) -> int:
    """Queue every matching row of the template's table for delivery; progress in job meta."""
    services, job = current(), get_current_job()

    def report(queued: int, total: int) -> None:
        if job is not None:
            job.meta.update({"queued": queued, "total": total})
            job.save_meta()
        schedule.wake_dispatcher(services)

    queued = manual.queue_rows(services, sync_id, on_batch=report)
    schedule.wake_dispatcher(services)
    return queued


@instrumented("poll_coze_outbox")
def poll_coze_outbox() -> None:
    """Cron: wake the dispatcher (triggers on SQLite cannot)."""
    schedule.wake_dispatcher(current())

