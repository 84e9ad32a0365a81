"""Formula and lookup columns: Feishu sends no `bitable_record_changed_v1` when only a computed
value changes (an edit of the record a lookup points at, a formula that reads another table),
so change events alone leave them stale. Tables with such fields have just those columns
re-read on a schedule (CACHE_FORMULA_REFRESH_SECONDS), with the list API's `field_names`."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session

from bot.caches import store
from bot.caches.fetch import Fetcher
from bot.caches.sync import SYNC_LOCK_SECONDS, sync_lock_name
from bot.models import CacheField, CacheRecord, CacheTable, utcnow
from bot.services import Services

log = logging.getLogger(__name__)

LOOKUP, FORMULA = 19, 20  # bitable field types whose values are computed
COMPUTED_TYPES = (LOOKUP, FORMULA)


def merge_computed(stored: dict, fresh: dict, names: list[str]) -> dict:
    """A record's stored fields with the computed ones taken from `fresh` (an empty computed
    cell is absent from Feishu's answer, so it is dropped here too)."""
    merged = {k: v for k, v in stored.items() if k not in names}
    merged.update({k: fresh[k] for k in names if k in fresh})
    return merged


def due_tables(engine: Engine, every_seconds: int) -> list[tuple[int, str]]:
    """(source id, table id) of cached tables with computed fields whose columns were last
    read more than `every_seconds` ago."""
    if every_seconds <= 0:
        return []
    cutoff = utcnow() - timedelta(seconds=every_seconds)
    with Session(engine) as session:
        computed = select(CacheField.source_id, CacheField.table_id).where(
            CacheField.type.in_(COMPUTED_TYPES)).distinct().subquery()
        rows = session.execute(
            select(CacheTable.source_id, CacheTable.table_id)
            .join(computed, (computed.c.source_id == CacheTable.source_id)
                  & (computed.c.table_id == CacheTable.table_id))
            .where(or_(CacheTable.formulas_refreshed_at.is_(None), CacheTable.formulas_refreshed_at < cutoff))
            .order_by(CacheTable.source_id, CacheTable.table_id)).all()
    return [(source_id, table_id) for source_id, table_id in rows]


def computed_field_names(engine: Engine, source_id: int, table_id: str) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(CacheField.name).where(
            CacheField.source_id == source_id, CacheField.table_id == table_id,
            CacheField.type.in_(COMPUTED_TYPES)).order_by(CacheField.position)))


def refresh_computed(services: Services, source_id: int, table_id: str) -> dict:
    """Re-read one table's formula and lookup columns and write them into the cached records.
    Records added or deleted meanwhile are left to change events and full syncs; a running
    full sync (which reads them anyway) makes this round a no-op."""
    source = store.resolved_source(services.engine, source_id)
    if source is None:
        return {"updated": 0, "skipped": "source gone"}
    names = computed_field_names(services.engine, source_id, table_id)
    if not names:
        return {"updated": 0, "skipped": "no formula or lookup fields"}
    lock = services.redis.lock(sync_lock_name(source.name), timeout=SYNC_LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        return {"updated": 0, "skipped": "a sync of the source is running"}
    fetcher = Fetcher(services.feishu, as_user=source.as_user)
    try:
        fresh = {r["record_id"]: r.get("fields") or {}
                 for r in fetcher.field_values(source.obj_token, table_id, names)}
        updated = _write(services.engine, source_id, table_id, fresh, names)
    finally:
        lock.release()
    log.info("formula columns refreshed", extra={"source": source.name, "table": table_id,
                                                 "updated": updated, "api_calls": fetcher.calls})
    return {"updated": updated, "api_calls": fetcher.calls}


def _write(engine: Engine, source_id: int, table_id: str, fresh: dict[str, dict], names: list[str]) -> int:
    updated = 0
    with engine.begin() as conn:
        rows = conn.execute(select(CacheRecord.id, CacheRecord.record_id, CacheRecord.fields).where(
            CacheRecord.source_id == source_id, CacheRecord.table_id == table_id)).all()
        for row_id, record_id, text in rows:
            if record_id not in fresh:
                continue
            stored = json.loads(text)
            merged = merge_computed(stored, fresh[record_id], names)
            if merged != stored:
                conn.execute(update(CacheRecord).where(CacheRecord.id == row_id)
                             .values(fields=json.dumps(merged, ensure_ascii=False)))
                updated += 1
        conn.execute(update(CacheTable).where(CacheTable.source_id == source_id,
                                              CacheTable.table_id == table_id)
                     .values(formulas_refreshed_at=utcnow()))
    return updated
