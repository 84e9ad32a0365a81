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
from bot.queue import QueueName, enqueue_once, job_is_live
from bot.services import Services, current
from jobs.timing import instrumented

log = logging.getLogger(__name__)

DISPATCH_JOB_ID = "coze-dispatch"
LATER_JOB_ID = "coze-dispatch-later"
DISPATCH_BUDGET_SECONDS = 50.0  # then hand over to a fresh job, so one job never hogs a worker


def wake_dispatcher(services: Services) -> None:
    enqueue_once(services.queues[QueueName.COZE], DISPATCH_JOB_ID, dispatch_coze_outbox, timeout=300)


def _schedule_retry(services: Services) -> None:
    """Rows backing off: wake up when the first is due (the cron would too, but later)."""
    due = outbox.next_due(services.engine)
    if due is None:
        return
    queue = services.queues[QueueName.COZE]
    if job_is_live(queue.connection, LATER_JOB_ID):
        return
    delay = max(0.5, (due - outbox.utcnow()).total_seconds())
    if delay <= services.settings.coze_poll_seconds:
        queue.enqueue_in(timedelta(seconds=delay), dispatch_coze_outbox, job_id=LATER_JOB_ID, job_timeout=300)


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
