"""Applying change events to a cached bitable: re-fetch every noted record's *current* state in
batches (so duplicated or reordered events cannot leave the cache wrong), and refresh a table's
fields when they changed.

`batch_get` answers text fields in another shape than the list a full sync reads; the store
gives every field type one shape (values.py), which needs the field's type — so a record naming
a field the cache does not know yet makes the schema be read first."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from bot.caches import schedule, store, values
from bot.caches.fetch import Fetcher
from bot.caches.sync import SYNC_LOCK_SECONDS, sync_lock_name
from bot.models import CacheSource
from bot.services import Services

# record ids → (records found, ids Feishu no longer has)
FetchBatch = Callable[[list[str]], tuple[Sequence[dict], Sequence[str]]]


def drain_pending(engine: Engine, source_id: int, table_id: str, fetch: FetchBatch) -> int:
    """Fetch and apply pending records until none is left (events may add more meanwhile);
    returns how many pending rows were taken."""
    applied = 0
    while taken := store.pending(engine, source_id, table_id):
        found, absent = fetch([record_id for record_id, _ in taken])
        store.apply_changes(engine, source_id, table_id, found, absent, taken)
        applied += len(taken)
    return applied


def apply_pending(services: Services, source_id: int, table_id: str) -> dict:
    """Apply one table's pending changes — unless a full sync of its source runs: that sync
    writes what it read before these changes, so the apply waits for it (re-queued, deferred)."""
    source = store.resolved_source(services.engine, source_id)
    if source is None:
        return {"applied": 0, "skipped": "source gone"}
    lock = services.redis.lock(sync_lock_name(source.name), timeout=SYNC_LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        schedule.schedule_apply_after_sync(services, source_id, table_id)
        return {"applied": 0, "deferred": "full sync running"}
    fetcher = Fetcher(services.feishu, as_user=source.as_user)
    try:
        applied = drain_pending(services.engine, source_id, table_id,
                                _typed_batch_get(services, source, table_id, fetcher))
    finally:
        lock.release()
    return {"applied": applied, "api_calls": fetcher.calls}


def _typed_batch_get(services: Services, source: CacheSource, table_id: str, fetcher: Fetcher) -> FetchBatch:
    """batch_get, re-reading the table's fields first when a record carries one the cache has
    no type for (added since the last schema read; its field event may still be queued)."""

    def fetch(ids: list[str]) -> tuple[Sequence[dict], Sequence[str]]:
        found, absent = fetcher.batch_get(source.obj_token, table_id, ids)
        known = {f.name: f.type for f in store.table_fields(services.engine, source.id, table_id)}
        if values.unknown_fields(found, known):
            store.replace_fields(services.engine, source.id, table_id,
                                 fetcher.fields(source.obj_token, table_id))
        return found, absent

    return fetch


def refresh_schema(services: Services, source_id: int, table_id: str) -> int:
    """Re-read one table's fields (a field was added, renamed or retyped); how many it has."""
    source = store.resolved_source(services.engine, source_id)
    if source is None:
        return 0
    fields = Fetcher(services.feishu, as_user=source.as_user).fields(source.obj_token, table_id)
    store.replace_fields(services.engine, source_id, table_id, fields)
    return len(fields)
