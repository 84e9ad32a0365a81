"""Cache syncs as RQ jobs: one per source, and the periodic dispatcher that enqueues due ones."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.caches import store
from bot.caches.sync import SYNC_LOCK_SECONDS, is_fresh, sync_lock_name, sync_source
from bot.queue import QueueName, enqueue_once, retry_policy
from bot.services import Services, current
from jobs.timing import instrumented

log = logging.getLogger(__name__)

CHANGE_JOB_RETRIES = [5, 30, 120]  # seconds between retries of apply / schema-refresh jobs


@instrumented("sync_cache_source")
def sync_cache_source(name: str, force: bool = False) -> dict:
    result = sync_source(current(), name, force=force)
    return {"source": result.source, "outcome": result.outcome, "records": result.records,
            "api_calls": result.api_calls}


def enqueue_cache_sync(services: Services, name: str, *, force: bool = False) -> None:
    """One sync of a source as a job, retried on failure (cron, chat commands and buttons)."""
    services.queues[QueueName.DEFAULT].enqueue(
        sync_cache_source, name, force, job_timeout=3600, retry=retry_policy([30, 120, 600]),
        description=f"cache sync {name}" + (" (forced)" if force else ""))


@instrumented("schedule_cache_syncs")
def schedule_cache_syncs() -> list[str]:
    """Run by cron every minute: enqueue a sync for every source whose interval has passed."""
    services = current()
    # A sync already running holds its source's lock and reports itself busy: no status check here,
    # so a sync killed mid-way cannot leave its source unscheduled.
    due = [s.name for s in store.list_sources(services.engine) if not is_fresh(s)]
    for name in due:
        enqueue_cache_sync(services, name)
    # Changes noted by events whose apply job never ran (a lost job, a race with a finishing one).
    for source_id, table_id in store.pending_tables(services.engine, older_than_seconds=30):
        schedule_apply(services, source_id, table_id)
    return due


def schedule_apply(services, source_id: int, table_id: str) -> None:
    enqueue_once(services.queues[QueueName.DEFAULT], f"cache-apply-{source_id}-{table_id}",
                 apply_cache_changes, source_id, table_id, retry=retry_policy(CHANGE_JOB_RETRIES))


def schedule_schema_refresh(services, source_id: int, table_id: str) -> None:
    enqueue_once(services.queues[QueueName.DEFAULT], f"cache-schema-{source_id}-{table_id}",
                 refresh_cache_schema, source_id, table_id, retry=retry_policy(CHANGE_JOB_RETRIES))


@instrumented("apply_cache_changes")
def apply_cache_changes(source_id: int, table_id: str) -> dict:
    """Re-fetch every pending record of one table (batched), apply, repeat until none is left."""
    from bot.caches.fetch import Fetcher

    services = current()
    source = store.resolved_source(services.engine, source_id)
    if source is None:
        return {"applied": 0, "skipped": "source gone"}
    # A full sync of this source writes what it read before these changes: wait for it to end.
    lock = services.redis.lock(sync_lock_name(source.name), timeout=SYNC_LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        services.queues[QueueName.DEFAULT].enqueue_in(
            timedelta(seconds=5), apply_cache_changes, source_id, table_id,
            job_id=f"cache-apply-{source_id}-{table_id}-after-sync", retry=retry_policy(CHANGE_JOB_RETRIES))
        return {"applied": 0, "deferred": "full sync running"}
    fetcher = Fetcher(services.feishu, as_user=source.as_user)
    applied = 0
    try:
        while taken := store.pending(services.engine, source_id, table_id):
            found, absent = fetcher.batch_get(source.obj_token, table_id, [r for r, _ in taken])
            store.apply_changes(services.engine, source_id, table_id, found, absent, taken)
            applied += len(taken)
    finally:
        lock.release()
    return {"applied": applied, "api_calls": fetcher.calls}


@instrumented("refresh_cache_schema")
def refresh_cache_schema(source_id: int, table_id: str) -> int:
    from bot.caches.fetch import Fetcher

    services = current()
    source = store.resolved_source(services.engine, source_id)
    if source is None:
        return 0
    fields = Fetcher(services.feishu, as_user=source.as_user).fields(source.obj_token, table_id)
    store.replace_fields(services.engine, source_id, table_id, fields)
    return len(fields)
