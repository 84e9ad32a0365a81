"""Bitable change events: keep caches fresh without re-syncing whole tables.

`drive.file.bitable_record_changed_v1` only notes which records changed (`cache_pending`) and
makes sure an apply job is queued; the job re-fetches every noted record's *current* state in
batches. Because the cache takes Feishu's current state, not the event's values, duplicated or
out-of-order events cannot leave it wrong, and a burst of events costs one batched fetch.
"""

from __future__ import annotations

from typing import Any

from bot.caches import store
from bot.caches.schedule import schedule_apply, schedule_schema_refresh
from bot.services import Services


def on_record_changed(services: Services, event_doc: dict[str, Any]) -> str:
    event = event_doc.get("event") or {}
    file_token, table_id = event.get("file_token"), event.get("table_id")
    record_ids = [a.get("record_id") for a in event.get("action_list") or [] if a.get("record_id")]
    sources = store.sources_for_file(services.engine, file_token or "")
    if not sources or not table_id:
        return "ignored: no cache source for this file"
    for source in sources:
        store.add_pending(services.engine, source.id, table_id, record_ids)
        schedule_apply(services, source.id, table_id)
    return f"noted {len(record_ids)} changed record(s)"


def on_field_changed(services: Services, event_doc: dict[str, Any]) -> str:
    event = event_doc.get("event") or {}
    sources = store.sources_for_file(services.engine, event.get("file_token") or "")
    for source in sources:
        schedule_schema_refresh(services, source.id, event.get("table_id") or "")
    return f"schema refresh queued for {len(sources)} source(s)"
