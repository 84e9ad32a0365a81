"""Cache jobs: sync one source, find what is due (cron), apply change events, refresh a schema."""

from __future__ import annotations

from bot.caches import changes, formulas, schedule
from bot.caches.sync import sync_source
from bot.services import current
from jobs.timing import instrumented


@instrumented("sync_cache_source")
def sync_cache_source(name: str, force: bool = False) -> dict:
    result = sync_source(current(), name, force=force)
    return {"source": result.source, "outcome": result.outcome, "records": result.records,
            "api_calls": result.api_calls}


@instrumented("schedule_cache_syncs")
def schedule_cache_syncs() -> list[str]:
    return schedule.schedule_due(current())


@instrumented("apply_cache_changes")
def apply_cache_changes(source_id: int, table_id: str) -> dict:
    return changes.apply_pending(current(), source_id, table_id)


@instrumented("refresh_cache_schema")
def refresh_cache_schema(source_id: int, table_id: str) -> int:
    return changes.refresh_schema(current(), source_id, table_id)


@instrumented("refresh_cache_formulas")
def refresh_cache_formulas(source_id: int, table_id: str) -> dict:
    return formulas.refresh_computed(current(), source_id, table_id)
