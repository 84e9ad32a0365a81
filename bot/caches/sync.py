"""One source's sync: skip within its interval unless forced, resolve wiki nodes, fetch, store.

A Redis lock per source keeps two syncs of the same source (a scheduled one and a manual one)
from running at once; the second reports itself skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from bot.caches import store
from bot.caches.fetch import Fetcher
from bot.caches.sources import SourceError, parse_source, subscribe_refusal
from bot.feishu import FeishuAPIError
from bot.models import CacheSource, utcnow
from bot.services import Services

log = logging.getLogger(__name__)

SYNC_LOCK_SECONDS = 3600


@dataclass(frozen=True)
class SyncResult:
    source: str
    outcome: str  # "synced", "fresh" (within its interval), "busy" (another sync is running)
    records: int = 0
    tables: int = 0
    api_calls: int = 0
    seconds: float = 0.0


def sync_lock_name(source_name: str) -> str:
    """Held by a full sync, and by change-applying jobs, of one source."""
    return f"fb:lock:cache-sync:{source_name}"


def is_fresh(source: CacheSource, now=None) -> bool:
    now = now or utcnow()
    return (source.last_success_at is not None
            and now - source.last_success_at < timedelta(seconds=source.interval_seconds))


def sync_source(services: Services, name: str, *, force: bool = False,
                progress: Callable[[int], None] | None = None) -> SyncResult:
    source = store.get_source(services.engine, name)
    if not force and is_fresh(source):
        return SyncResult(name, "fresh")
    lock = services.redis.lock(sync_lock_name(name), timeout=SYNC_LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        return SyncResult(name, "busy")
    started = time.monotonic()
    fetcher = Fetcher(services.feishu, as_user=source.as_user)
    store.update_source(services.engine, source.id, status="running", last_sync_at=utcnow())
    try:
        obj_token, obj_type = source.obj_token, source.obj_type
        node: dict | None = None
        if source.kind in ("wiki", "wiki-space"):
            node = fetcher.resolve_wiki(parse_source(source.token, source.kind).token)
            obj_token, obj_type = node["obj_token"], node["obj_type"]
            if (obj_token, obj_type) != (source.obj_token, source.obj_type):
                store.update_source(services.engine, source.id, obj_token=obj_token, obj_type=obj_type,
                                    title=node.get("title"))
        if source.kind == "wiki-space":
            assert node is not None
            records, tables = _sync_wiki_space(services, fetcher, source, node, progress)
        elif obj_type == "bitable":
            records, tables = _sync_bitable(services, fetcher, source, obj_token, progress)
        elif obj_type == "sheet":
            records, tables = _sync_sheet(services, fetcher, source, obj_token, progress)
        elif obj_type == "docx":
            documents = [_document(fetcher, obj_token, node)]
            records, tables = store.replace_documents(services.engine, source.id, documents, utcnow()), 1
        else:
            raise SourceError(f"{name}: {obj_type} documents are not supported (bitable, sheet, docx are)")
    except Exception as exc:
        store.update_source(services.engine, source.id, status="failed",
                            last_error=f"{type(exc).__name__}: {exc}"[:2000], last_api_calls=fetcher.calls,
                            last_duration_ms=int((time.monotonic() - started) * 1000))
        log.warning("cache sync failed", extra={"source": name, "error": str(exc)})
        raise
    finally:
        lock.release()
    seconds = time.monotonic() - started
    store.update_source(services.engine, source.id, status="ok", last_success_at=utcnow(), last_error=None,
                        last_api_calls=fetcher.calls, last_duration_ms=int(seconds * 1000))
    log.info("cache synced", extra={"source": name, "records": records, "api_calls": fetcher.calls})
    return SyncResult(name, "synced", records, tables, fetcher.calls, seconds)


def _sync_bitable(services: Services, fetcher: Fetcher, source: CacheSource, app_token: str,
                  progress: Callable[[int], None] | None) -> tuple[int, int]:
    if source.subscribed_at is None:
        # Subscribe before reading, so no change made during the full read is missed.
        _subscribe(services, fetcher, source, app_token)
    tables = fetcher.bitable(app_token, progress)
    return store.replace_bitable(services.engine, source.id, tables, utcnow()), len(tables)


def _subscribe(services: Services, fetcher: Fetcher, source: CacheSource, app_token: str) -> None:
    """Change events flow only for subscribed files, and only the file's owner or a manager may
    subscribe. A refusal (a read-only share) does not fail the sync: the source is still read in
    full on its schedule, its status says why it gets no events, and its next sync asks again."""
    try:
        fetcher.subscribe(app_token)
    except FeishuAPIError as exc:
        reason = subscribe_refusal(exc.code, exc.msg)
        store.update_source(services.engine, source.id, events_error=reason)
        log.warning("no change events for a cache source; it is refreshed on its schedule only",
                    extra={"source": source.name, "reason": reason})
        return
    store.update_source(services.engine, source.id, subscribed_at=utcnow(), events_error=None)


def _sync_sheet(services: Services, fetcher: Fetcher, source: CacheSource, token: str,
                progress: Callable[[int], None] | None) -> tuple[int, int]:
    sheets = []
    for sheet in fetcher.sheets(token):
        grid = sheet.get("grid_properties") or {}
        values = fetcher.sheet_values(token, sheet["sheet_id"], int(grid.get("row_count") or 0),
                                      int(grid.get("column_count") or 0), progress)
        sheets.append({"sheet_id": sheet["sheet_id"], "title": sheet["title"], "values": values})
    return store.replace_sheets(services.engine, source.id, sheets, utcnow()), len(sheets)


def _document(fetcher: Fetcher, document_id: str, node: dict | None) -> dict:
    content, blocks = fetcher.document(document_id)
    title = (node or {}).get("title") or (content.splitlines() or [""])[0]
    return {"document_id": document_id, "node_token": (node or {}).get("node_token"), "title": title,
            "raw_content": content, "blocks": blocks}


def _sync_wiki_space(services: Services, fetcher: Fetcher, source: CacheSource, root: dict,
                     progress: Callable[[int], None] | None) -> tuple[int, int]:
    """Every docx document at and under a wiki node (walked breadth first)."""
    documents, queue = [], [root]
    while queue:
        node = queue.pop(0)
        if node.get("obj_type") == "docx":
            documents.append(_document(fetcher, node["obj_token"], node))
            if progress is not None:
                progress(1)
        if node.get("has_child"):
            queue += fetcher.wiki_children(node["space_id"], node["node_token"])
    return store.replace_documents(services.engine, source.id, documents, utcnow()), len(documents)
