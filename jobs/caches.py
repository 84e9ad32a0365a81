"""Cache syncs as RQ jobs: one per source, and the periodic dispatcher that enqueues due ones."""

from __future__ import annotations

import logging

from bot.caches import store
from bot.caches.sync import is_fresh, sync_source
from bot.queue import QueueName, retry_policy
from bot.services import current
from jobs.timing import instrumented

log = logging.getLogger(__name__)


@instrumented("sync_cache_source")
def sync_cache_source(name: str, force: bool = False) -> dict:
    result = sync_source(current(), name, force=force)
    return {"source": result.source, "outcome": result.outcome, "records": result.records,
            "api_calls": result.api_calls}


@instrumented("schedule_cache_syncs")
def schedule_cache_syncs() -> list[str]:
    """Run by cron every minute: enqueue a sync for every source whose interval has passed."""
    services = current()
    queue = services.queues[QueueName.DEFAULT]
    # A sync already running holds its source's lock and reports itself busy: no status check here,
    # so a sync killed mid-way cannot leave its source unscheduled.
    due = [s.name for s in store.list_sources(services.engine) if not is_fresh(s)]
    for name in due:
        queue.enqueue(sync_cache_source, name, job_timeout=3600, retry=retry_policy([30, 120, 600]),
                      description=f"cache sync {name}")
    return due
