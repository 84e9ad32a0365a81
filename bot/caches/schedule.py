"""Putting cache work on the queue: one sync of a source, the apply and schema-refresh jobs of
change events (one waiting job per table), formula-column refreshes, and the periodic pass that
finds what is due."""

from __future__ import annotations

from datetime import timedelta

from bot.caches import formulas, store
from bot.caches.sync import is_fresh
from bot.queue import Jobs, QueueName, enqueue_once, retry_policy
from bot.services import Services

CHANGE_JOB_RETRIES = [5, 30, 120]  # seconds between retries of apply / schema-refresh jobs
SYNC_RETRIES = [30, 120, 600]
AFTER_SYNC_DELAY = timedelta(seconds=5)  # an apply job deferred by a running full sync waits this long


def enqueue_cache_sync(services: Services, name: str, *, force: bool = False) -> None:
    """One sync of a source as a job, retried on failure (cron, chat commands and buttons)."""
    services.queues[QueueName.DEFAULT].enqueue(
        Jobs.SYNC_CACHE_SOURCE, name, force, job_timeout=3600, retry=retry_policy(SYNC_RETRIES),
        description=f"cache sync {name}" + (" (forced)" if force else ""))


def schedule_apply(services: Services, source_id: int, table_id: str) -> None:
    enqueue_once(services.queues[QueueName.DEFAULT], f"cache-apply-{source_id}-{table_id}",
                 Jobs.APPLY_CACHE_CHANGES, source_id, table_id, retry=retry_policy(CHANGE_JOB_RETRIES))


def schedule_apply_after_sync(services: Services, source_id: int, table_id: str) -> None:
    services.queues[QueueName.DEFAULT].enqueue_in(
        AFTER_SYNC_DELAY, Jobs.APPLY_CACHE_CHANGES, source_id, table_id,
        job_id=f"cache-apply-{source_id}-{table_id}-after-sync", retry=retry_policy(CHANGE_JOB_RETRIES))


def schedule_schema_refresh(services: Services, source_id: int, table_id: str) -> None:
    enqueue_once(services.queues[QueueName.DEFAULT], f"cache-schema-{source_id}-{table_id}",
                 Jobs.REFRESH_CACHE_SCHEMA, source_id, table_id, retry=retry_policy(CHANGE_JOB_RETRIES))


def schedule_formula_refresh(services: Services, source_id: int, table_id: str) -> None:
    enqueue_once(services.queues[QueueName.DEFAULT], f"cache-formulas-{source_id}-{table_id}",
                 Jobs.REFRESH_CACHE_FORMULAS, source_id, table_id, retry=retry_policy(CHANGE_JOB_RETRIES))


def schedule_due(services: Services) -> list[str]:
    """Enqueue a sync for every source whose interval has passed, an apply job for changes
    noted by events whose job never ran (a lost job, a race with a finishing one), and a
    refresh of formula and lookup columns (which change without events) where one is due."""
    # A sync already running holds its source's lock and reports itself busy: no status check here,
    # so a sync killed mid-way cannot leave its source unscheduled.
    due = [s.name for s in store.list_sources(services.engine) if not is_fresh(s)]
    for name in due:
        enqueue_cache_sync(services, name)
    for source_id, table_id in store.pending_tables(services.engine, older_than_seconds=30):
        schedule_apply(services, source_id, table_id)
    every = services.settings.cache_formula_refresh_seconds
    for source_id, table_id in formulas.due_tables(services.engine, every):
        schedule_formula_refresh(services, source_id, table_id)
    return due
