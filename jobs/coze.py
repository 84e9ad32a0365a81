"""Coze sync as RQ jobs: drain the outbox, queue a manual sync's rows, clean up.

The dispatcher is woken by whatever writes outbox rows it can see (the API, a manual sync,
PostgreSQL's NOTIFY through the cron process's listener) and by the cron every
COZE_POLL_SECONDS — SQLite triggers cannot wake anyone.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from rq import get_current_job
from sqlalchemy import select

from bot.coze import manual, outbox
from bot.coze.dispatch import run_round
from bot.models import CozeManualSync
from bot.queue import QueueName
from bot.services import Services, current
from jobs.timing import instrumented

log = logging.getLogger(__name__)

WAITING_KEY = "fb:coze:dispatch-waiting"  # set while a dispatch job waits in the queue
LATER_KEY = "fb:coze:dispatch-later"  # set while a delayed dispatch job is scheduled
DISPATCH_BUDGET_SECONDS = 50.0  # then hand over to a fresh job, so one job never hogs a worker
JOB_OPTIONS = {"job_timeout": 300, "result_ttl": 60, "failure_ttl": 7 * 24 * 3600}


def wake_dispatcher(services: Services) -> None:
    """Make sure one dispatch job is waiting. Only a *waiting* job is deduplicated (a Redis key
    its job deletes when it starts): a running job that was killed with its worker blocks
    nothing, and two dispatchers at once are safe (claims are atomic), merely redundant."""
    if services.redis.set(WAITING_KEY, "1", nx=True, ex=60):
        services.queues[QueueName.COZE].enqueue(dispatch_coze_outbox, **JOB_OPTIONS)


def _schedule_retry(services: Services) -> None:
    """Rows backing off: wake up when the first is due (the cron would too, but later)."""
    due = outbox.next_due(services.engine)
    if due is None:
        return
    delay = max(0.5, (due - outbox.utcnow()).total_seconds())
    if delay <= services.settings.coze_poll_seconds and services.redis.set(
        LATER_KEY, "1", nx=True, ex=int(delay) + 5
    ):
        services.queues[QueueName.COZE].enqueue_in(
            timedelta(seconds=delay), dispatch_coze_outbox, **JOB_OPTIONS
        )


def drain(services: Services, budget: float = DISPATCH_BUDGET_SECONDS) -> dict[str, int]:
    """Dispatch rounds until nothing is due or the budget is spent."""
    settings = services.settings
    outbox.free_stale_claims(services.engine, settings.coze_claim_lease_seconds)
    totals: Counter[str] = Counter()
    deadline = time.monotonic() + budget
    more = False
    with ThreadPoolExecutor(settings.coze_dispatch_threads, thread_name_prefix="coze") as pool:
        while time.monotonic() < deadline:
            counts = run_round(services, services.coze_clients, pool)
            if not counts["claimed"]:
                more = False
                break
            totals.update(counts)
            more = True
    settle_manual_syncs(services)
    if more:
        wake_dispatcher(services)
    else:
        _schedule_retry(services)
    return dict(totals)


@instrumented("dispatch_coze_outbox")
def dispatch_coze_outbox() -> dict[str, int]:
    services = current()
    services.redis.delete(WAITING_KEY)
    totals = drain(services)
    if totals:
        log.info("coze outbox dispatched", extra=totals)
    return totals


def settle_manual_syncs(services: Services) -> None:
    with services.sessions() as session:
        ids = list(session.scalars(select(CozeManualSync.id).where(CozeManualSync.status == "delivering")))
    for sync_id in ids:
        manual.progress(services, sync_id)


@instrumented("coze_manual_sync")
def coze_manual_sync(sync_id: int) -> int:
    """Queue every matching row of the template's table for delivery; progress in job meta."""
    services = current()
    job = get_current_job()

    def report(queued: int, total: int) -> None:
        if job is not None:
            job.meta.update({"queued": queued, "total": total})
            job.save_meta()
        wake_dispatcher(services)

    queued = manual.queue_rows(services, sync_id, on_batch=report)
    wake_dispatcher(services)
    return queued


@instrumented("poll_coze_outbox")
def poll_coze_outbox() -> None:
    """Cron: wake the dispatcher (triggers on SQLite cannot) and clean delivered rows up."""
    services = current()
    wake_dispatcher(services)


@instrumented("clean_coze_outbox")
def clean_coze_outbox() -> int:
    services = current()
    return outbox.clean_up(services.engine, services.settings.coze_retention_days)
