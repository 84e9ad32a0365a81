"""Periodic housekeeping, scheduled by `feishu-bridge cron` through RQ's cron scheduler."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot import receipts
from bot.queue import QueueName, requeue_event
from bot.services import current
from jobs.timing import instrumented

log = logging.getLogger(__name__)


@instrumented("sweep_receipts")
def sweep_receipts(grace_seconds: int = 30) -> int:
    """Re-enqueue receipts that were recorded but never queued (Redis was down at intake) or
    whose worker died mid-job (claim older than the lease). Returns how many were re-enqueued."""
    services = current()
    settings = services.settings
    stuck = receipts.abandoned(
        services.engine,
        older_than=timedelta(seconds=grace_seconds),
        lease=timedelta(seconds=settings.event_lease_seconds),
    )
    queue = services.queues[QueueName.DEFAULT]
    requeued = 0
    for receipt_id, attempts in stuck:
        if requeue_event(queue, receipt_id, settings.event_retry_intervals, attempts) is not None:
            requeued += 1
    if requeued:
        log.info("re-enqueued abandoned receipts", extra={"count": requeued})
    return requeued
