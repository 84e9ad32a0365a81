"""Periodic housekeeping, scheduled by `feishu-bridge cron` through RQ's cron scheduler."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot import receipts
from bot.queue import MAX_EVENTS_PER_JOB, QueueName, enqueue_events, job_is_live, new_event_job_id
from bot.services import current
from jobs.timing import instrumented

log = logging.getLogger(__name__)


@instrumented("sweep_receipts")
def sweep_receipts(grace_seconds: int = 30) -> int:
    """Re-enqueue receipts that were recorded but never queued (Redis was down at intake), whose
    job was lost, or whose worker died mid-job (claim older than the lease) — unless the job that
    carries them is still alive. Returns how many receipts were re-enqueued."""
    services = current()
    settings = services.settings
    stuck = receipts.abandoned(
        services.engine,
        older_than=timedelta(seconds=grace_seconds),
        lease=timedelta(seconds=settings.event_lease_seconds),
    )
    queue = services.queues[QueueName.DEFAULT]
    live: dict[str | None, bool] = {}
    orphans = [
        receipt_id for receipt_id, job_id in stuck
        if not live.setdefault(job_id, job_is_live(queue.connection, job_id))
    ]
    for start in range(0, len(orphans), MAX_EVENTS_PER_JOB):
        chunk = orphans[start:start + MAX_EVENTS_PER_JOB]
        job_id = new_event_job_id()
        # Point the receipts at the new job first: if the enqueue then fails, the next sweep
        # finds that job missing and tries again.
        receipts.assign_job(services.engine, chunk, job_id)
        enqueue_events(queue, chunk, settings.event_retry_intervals, job_id)
    if orphans:
        log.info("re-enqueued abandoned receipts", extra={"count": len(orphans)})
    return len(orphans)
