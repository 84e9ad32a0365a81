"""Cache tables in SQL: sources and their sync state, and replacing a bitable's mirror."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.orm import Session

from bot.caches import values
from bot.caches.fetch import TableData
from bot.caches.sources import SourceError, SourceRef, events_status
from bot.caches.visibility import Visibility, parse_visibility, stored
from bot.models import (
    CacheDocument,
    CacheField,
    CachePending,
    CacheRecord,
    CacheSheet,
    CacheSource,
    CacheTable,
    utcnow,
)

INSERT_CHUNK = 2000


def add_source(engine: Engine, name: str, given: str, ref: SourceRef, interval_seconds: int,
               as_user: str | None = None, visibility: Visibility | None = None) -> CacheSource:
    """`visibility` defaults to `owner` for a source read as a user, else `allowed`."""
    shown = visibility or parse_visibility(None, None, as_user)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        if session.scalar(select(CacheSource.id).where(CacheSource.name == name)) is not None:
            raise SourceError(f"a source named {name!r} exists; remove it first or pick another name")
        wiki = ref.kind in ("wiki", "wiki-space")  # resolved to the document on the first sync
        source = CacheSource(name=name, kind=ref.kind, token=given, interval_seconds=interval_seconds,
                             as_user=as_user, status="never", visibility=shown.kind,
                             visible_chats=shown.stored_chats,
                             obj_token=None if wiki else ref.token,
                             obj_type=None if wiki else {"doc": "docx"}.get(ref.kind, ref.kind))
        session.add(source)
    return source


def get_source(engine: Engine, name: str) -> CacheSource:
    with Session(engine) as session:
        source = session.scalar(select(CacheSource).where(CacheSource.name == name))
    if source is None:
        raise SourceError(f"no source named {name!r} (see `feishu-bridge sources list`)")
    return source


def set_visibility(engine: Engine, name: str, kind: str, chats: str | None = None) -> CacheSource:
    """Who may read the source in chat from now on (checked against its reader: `owner` needs
    an `--as-user` source); VisibilityError says what is wrong."""
    source = get_source(engine, name)
    shown = parse_visibility(kind, chats, source.as_user)
    update_source(engine, source.id, visibility=shown.kind, visible_chats=shown.stored_chats)
    source.visibility, source.visible_chats = shown.kind, shown.stored_chats
    return source


def resolved_source(engine: Engine, source_id: int) -> CacheSource | None:
    """The source, if it still exists and its document is known (change jobs need both)."""
    with Session(engine) as session:
        source = session.get(CacheSource, source_id)
    return source if source is not None and source.obj_token else None


def list_sources(engine: Engine) -> list[CacheSource]:
    with Session(engine) as session:
        return list(session.scalars(select(CacheSource).order_by(CacheSource.name)))


def remove_source(engine: Engine, name: str) -> None:
    source = get_source(engine, name)
    with engine.begin() as conn:
        for model in (CachePending, CacheRecord, CacheField, CacheTable, CacheSheet, CacheDocument):
            conn.execute(delete(model).where(model.source_id == source.id))
        conn.execute(delete(CacheSource).where(CacheSource.id == source.id))


def update_source(engine: Engine, source_id: int, **values) -> None:
    with engine.begin() as conn:
        conn.execute(update(CacheSource).where(CacheSource.id == source_id).values(**values))


def _field_rows(source_id: int, table_id: str, fields: Sequence[dict]) -> list[dict]:
    return [
        {"source_id": source_id, "table_id": table_id, "field_id": f["field_id"], "name": f["field_name"],
         "type": f["type"], "ui_type": f.get("ui_type"),
         "property": json.dumps(f.get("property"), ensure_ascii=False),
         "is_primary": bool(f.get("is_primary")), "position": i}
        for i, f in enumerate(fields)
    ]


def _record_rows(source_id: int, table_id: str, records: Sequence[dict], now: datetime,
                 types: Mapping[str, int]) -> list[dict]:
    """Rows to insert, each value in the one shape its field type has in the cache (values.py),
    whichever endpoint the record came from."""
    return [
        {"source_id": source_id, "table_id": table_id, "record_id": r["record_id"],
         "fields": json.dumps(values.normalise_fields(r.get("fields") or {}, types), ensure_ascii=False),
         "modified_ms": r.get("last_modified_time"), "synced_at": now}
        for r in records
    ]


def replace_bitable(engine: Engine, source_id: int, tables: Sequence[TableData], now: datetime) -> int:
    """Make the mirror equal to `tables`, in one transaction; returns the record count."""
    keep = [t.table_id for t in tables]
    total = 0
    with engine.begin() as conn:
        for model in (CacheRecord, CacheField, CacheTable):
            conn.execute(delete(model).where(model.source_id == source_id, model.table_id.not_in(keep)))
        for table in tables:
            conn.execute(delete(CacheTable).where(CacheTable.source_id == source_id,
                                                  CacheTable.table_id == table.table_id))
            conn.execute(insert(CacheTable).values(
                source_id=source_id, table_id=table.table_id, name=table.name, revision=table.revision,
                record_count=len(table.records), field_count=len(table.fields), synced_at=now,
                formulas_refreshed_at=now))
            conn.execute(delete(CacheField).where(CacheField.source_id == source_id,
                                                  CacheField.table_id == table.table_id))
            if table.fields:
                conn.execute(insert(CacheField), _field_rows(source_id, table.table_id, table.fields))
            conn.execute(delete(CacheRecord).where(CacheRecord.source_id == source_id,
                                                   CacheRecord.table_id == table.table_id))
            types = values.field_types(table.fields)
            rows = _record_rows(source_id, table.table_id, table.records, now, types)
            for start in range(0, len(rows), INSERT_CHUNK):
                conn.execute(insert(CacheRecord), rows[start:start + INSERT_CHUNK])
            total += len(rows)
    return total


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def summary(engine: Engine) -> list[dict]:
    now = utcnow()
    with Session(engine) as session:
        sources = list(session.scalars(select(CacheSource).order_by(CacheSource.name)))
        tables = list(session.scalars(select(CacheTable).order_by(CacheTable.source_id, CacheTable.id)))
        sheets = session.execute(select(CacheSheet.source_id, CacheSheet.title, CacheSheet.row_count)
                                 .order_by(CacheSheet.source_id, CacheSheet.position)).all()
        documents = session.execute(select(CacheDocument.source_id, CacheDocument.title)
                                    .order_by(CacheDocument.source_id, CacheDocument.title)).all()
    by_source: dict[int, list[CacheTable]] = {}
    for table in tables:
        by_source.setdefault(table.source_id, []).append(table)
    out = []
    for s in sources:
        stale = None if s.last_success_at is None else int((now - s.last_success_at).total_seconds())
        out.append({
            "source": s.name, "kind": s.kind, "title": s.title, "status": s.status,
            "visibility": s.visibility, "visible_chats": list(stored(s.visibility, s.visible_chats).chats),
            "last_success_at": s.last_success_at.isoformat() if s.last_success_at else None,
            "age_seconds": stale, "stale": stale is None or stale > s.interval_seconds,
            "interval_seconds": s.interval_seconds, "last_error": s.last_error,
            "events": events_status(s.obj_type, s.subscribed_at is not None, s.events_error,
                                    s.interval_seconds),
            "last_api_calls": s.last_api_calls, "last_duration_ms": s.last_duration_ms,
            "tables": [{"table_id": t.table_id, "name": t.name, "records": t.record_count,
                        "fields": t.field_count, "full_refresh_at": _iso(t.synced_at),
                        "formulas_refreshed_at": _iso(t.formulas_refreshed_at)}
                       for t in by_source.get(s.id, [])],
            "sheets": [{"title": title, "rows": rows} for sid, title, rows in sheets if sid == s.id],
            "documents": [title for sid, title in documents if sid == s.id],
        })
    return out


def sources_for_file(engine: Engine, file_token: str) -> list[CacheSource]:
    with Session(engine) as session:
        return list(session.scalars(select(CacheSource).where(CacheSource.obj_token == file_token)))


def add_pending(engine: Engine, source_id: int, table_id: str, record_ids: Sequence[str]) -> None:
    """Note records to re-fetch; a record already pending gets its version bumped."""
    if not record_ids:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    now = utcnow()
    stmt = dialect.insert(CachePending).values([
        {"source_id": source_id, "table_id": table_id, "record_id": r, "version": 1, "queued_at": now}
        for r in dict.fromkeys(record_ids)
    ])
    stmt = stmt.on_conflict_do_update(
        index_elements=["source_id", "table_id", "record_id"],
        set_={"version": CachePending.version + 1, "queued_at": now},
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def pending(engine: Engine, source_id: int, table_id: str, limit: int = 1000) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(CachePending.record_id, CachePending.version)
            .where(CachePending.source_id == source_id, CachePending.table_id == table_id)
            .order_by(CachePending.id).limit(limit))]


def pending_tables(engine: Engine, older_than_seconds: float = 0) -> list[tuple[int, str]]:
    from datetime import timedelta

    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(CachePending.source_id, CachePending.table_id)
            .where(CachePending.queued_at <= cutoff).distinct())]


def apply_changes(engine: Engine, source_id: int, table_id: str, found: Sequence[dict],
                  absent: Sequence[str], taken: Sequence[tuple[str, int]]) -> None:
    """Upsert the re-fetched records, delete the absent ones and clear the pending rows that
    were taken — unless another event bumped them meanwhile (then they are fetched again)."""
    now = utcnow()
    gone = set(absent) - {r["record_id"] for r in found}
    with engine.begin() as conn:
        ids = [r["record_id"] for r in found] + list(gone)
        if ids:
            conn.execute(delete(CacheRecord).where(CacheRecord.source_id == source_id,
                                                   CacheRecord.table_id == table_id,
                                                   CacheRecord.record_id.in_(ids)))
        if found:
            types = dict(conn.execute(select(CacheField.name, CacheField.type).where(
                CacheField.source_id == source_id, CacheField.table_id == table_id)).all())
            conn.execute(insert(CacheRecord), _record_rows(source_id, table_id, found, now, types))
        for record_id, version in taken:
            conn.execute(delete(CachePending).where(
                CachePending.source_id == source_id, CachePending.table_id == table_id,
                CachePending.record_id == record_id, CachePending.version == version))
        count = conn.execute(select(func.count()).select_from(CacheRecord).where(
            CacheRecord.source_id == source_id, CacheRecord.table_id == table_id)).scalar_one()
        conn.execute(update(CacheTable).where(CacheTable.source_id == source_id,
                                              CacheTable.table_id == table_id)
                     .values(record_count=count))  # synced_at stays the last full read


def replace_fields(engine: Engine, source_id: int, table_id: str, fields: Sequence[dict]) -> None:
    with engine.begin() as conn:
        conn.execute(delete(CacheField).where(CacheField.source_id == source_id,
                                              CacheField.table_id == table_id))
        if fields:
            conn.execute(insert(CacheField), _field_rows(source_id, table_id, fields))
        conn.execute(update(CacheTable).where(CacheTable.source_id == source_id,
                                              CacheTable.table_id == table_id)
                     .values(field_count=len(fields)))


def find_table(engine: Engine, source_name: str, table: str) -> tuple[CacheSource, CacheTable]:
    """A cached table by source name and table name or id; SourceError names what exists."""
    source = get_source(engine, source_name)
    with Session(engine) as session:
        tables = list(session.scalars(select(CacheTable).where(CacheTable.source_id == source.id)))
    for candidate in tables:
        if table in (candidate.table_id, candidate.name):
            return source, candidate
    names = ", ".join(t.name for t in tables) or "none cached yet (run `feishu-bridge sync`)"
    raise SourceError(f"no table {table!r} in {source_name}; tables: {names}")


def table_fields(engine: Engine, source_id: int, table_id: str) -> list[CacheField]:
    with Session(engine) as session:
        return list(session.scalars(
            select(CacheField).where(CacheField.source_id == source_id, CacheField.table_id == table_id)
            .order_by(CacheField.position)))


def iter_records(engine: Engine, source_id: int, table_id: str):
    """(record_id, fields dict) in record-id order, streamed."""
    stmt = (select(CacheRecord.record_id, CacheRecord.fields)
            .where(CacheRecord.source_id == source_id, CacheRecord.table_id == table_id)
            .order_by(CacheRecord.record_id))
    with engine.connect() as conn:
        for record_id, fields in conn.execution_options(yield_per=2000).execute(stmt):
            yield record_id, json.loads(fields)


def replace_sheets(engine: Engine, source_id: int, sheets: Sequence[dict], now: datetime) -> int:
    """sheets: [{sheet_id, title, values}] — the whole spreadsheet; returns the cell-row count."""
    with engine.begin() as conn:
        conn.execute(delete(CacheSheet).where(CacheSheet.source_id == source_id))
        if sheets:
            conn.execute(insert(CacheSheet), [
                {"source_id": source_id, "sheet_id": s["sheet_id"], "title": s["title"], "position": i,
                 "row_count": len(s["values"]), "column_count": max((len(r) for r in s["values"]), default=0),
                 "cell_values": json.dumps(s["values"], ensure_ascii=False), "synced_at": now}
                for i, s in enumerate(sheets)
            ])
    return sum(len(s["values"]) for s in sheets)


def replace_documents(engine: Engine, source_id: int, documents: Sequence[dict], now: datetime) -> int:
    """documents: [{document_id, node_token, title, raw_content, blocks}]."""
    with engine.begin() as conn:
        conn.execute(delete(CacheDocument).where(CacheDocument.source_id == source_id))
        if documents:
            conn.execute(insert(CacheDocument), [
                {"source_id": source_id, "document_id": d["document_id"], "node_token": d.get("node_token"),
                 "title": d["title"], "raw_content": d["raw_content"],
                 "blocks": json.dumps(d["blocks"], ensure_ascii=False), "synced_at": now}
                for d in documents
            ])
    return len(documents)
