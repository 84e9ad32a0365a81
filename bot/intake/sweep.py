"""The sweeper: receipts recorded but never queued (Redis was down at intake), whose job was
lost, whose worker died mid-job, or whose retry Redis lost go back on the queue — unless the job
carrying them will still run."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.intake import receipts
from bot.intake.schedule import MAX_EVENTS_PER_JOB, enqueue_events, new_event_job_id
from bot.queue import QueueName, job_will_run
from bot.services import Services

log = logging.getLogger(__name__)


def sweep_receipts(services: Services, grace_seconds: int = 30) -> int:
    """Re-enqueue abandoned receipts; returns how many."""
    settings = services.settings
    stuck = receipts.abandoned(
        services.engine,
        older_than=timedelta(seconds=grace_seconds),
        lease=timedelta(seconds=settings.event_lease_seconds),
        max_attempts=len(settings.event_retry_intervals) + 1,  # the first run and RQ's retries
    )
    queue = services.queues[QueueName.DEFAULT]
    live: dict[str | None, bool] = {}
    orphans = [
        receipt_id for receipt_id, job_id in stuck
        if not live.setdefault(job_id, job_will_run(queue.connection, job_id))
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
