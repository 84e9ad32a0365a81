"""Putting Coze work on the queue: wake the dispatcher, wake it again when backed-off rows fall
due, and start a manual sync (REST, chat and the CLI all start one here).

The dispatcher is woken by whatever writes outbox rows it can see (the API, a manual sync,
PostgreSQL's NOTIFY through the cron process's listener) and by the cron every
COZE_POLL_SECONDS — SQLite triggers cannot wake anyone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.coze import manual, outbox
from bot.models import CozeManualSync
from bot.queue import Jobs, QueueName
from bot.services import Services

WAITING_KEY = "fb:coze:dispatch-waiting"  # set while a dispatch job waits in the queue
LATER_KEY = "fb:coze:dispatch-later"  # set while a delayed dispatch job is scheduled
DISPATCH_JOB = {"job_timeout": 300, "result_ttl": 60, "failure_ttl": 7 * 24 * 3600}


def wake_dispatcher(services: Services) -> None:
    """Make sure one dispatch job is waiting. Only a *waiting* job is deduplicated (a Redis key
    its job deletes when it starts): a running job that was killed with its worker blocks
    nothing, and two dispatchers at once are safe (claims are atomic), merely redundant."""
    if services.redis.set(WAITING_KEY, "1", nx=True, ex=60):
        services.queues[QueueName.COZE].enqueue(Jobs.DISPATCH_COZE_OUTBOX, **DISPATCH_JOB)


def dispatcher_started(services: Services) -> None:
    """Called by the dispatch job as it starts: the next wake-up queues a new one."""
    services.redis.delete(WAITING_KEY)


def wake_when_due(services: Services) -> None:
    """Rows backing off: wake up when the first is due (the cron would too, but later)."""
    due = outbox.next_due(services.engine)
    if due is None:
        return
    delay = max(0.5, (due - outbox.utcnow()).total_seconds())
    if delay <= services.settings.coze_poll_seconds and services.redis.set(
        LATER_KEY, "1", nx=True, ex=int(delay) + 5
    ):
        services.queues[QueueName.COZE].enqueue_in(
            timedelta(seconds=delay), Jobs.DISPATCH_COZE_OUTBOX, **DISPATCH_JOB
        )


def start_manual_sync(
    services: Services, template_uuid: str, batch_size: int, filters: Any
) -> CozeManualSync:
    """Validate and record a manual sync, then queue the job that writes its outbox rows.
    Raises SpecError (422) and TemplateNotFound (404) before anything is queued."""
    sync = manual.create(services, template_uuid, batch_size, filters)
    services.queues[QueueName.COZE].enqueue(
        Jobs.COZE_MANUAL_SYNC, sync.id, job_timeout=3600, job_id=f"coze-manual-sync-{sync.id}"
    )
    return sync
