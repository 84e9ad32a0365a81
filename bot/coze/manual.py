"""Manual sync: every row of a template's table that matches the filters goes through the
outbox as an `sync` operation — the same durable path, retries and per-row order as triggered
changes — queued in batches by a job, with progress in `coze_manual_syncs`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, cast, func, insert, select, update

from bot.coze import filters as filter_rules
from bot.coze import schema_info
from bot.coze.mapping import dump_values
from bot.coze.outbox import OUTBOX, utcnow
from bot.coze.spec import Problem, SpecError
from bot.coze.templates import get
from bot.coze.triggers import KEY_SEPARATOR
from bot.models import CozeManualSync, CozeTemplate
from bot.services import Services

MAX_BATCH = 5000


def create(services: Services, template_uuid: str, batch_size: int, raw_filters: Any) -> CozeManualSync:
    """Validate, then record the request (the job does the work). Raises SpecError (422) and
    TemplateNotFound (404)."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= MAX_BATCH:
        raise SpecError(
            [Problem(field="batch_size", message=f"batch_size must be an integer from 1 to {MAX_BATCH}")]
        )
    with services.sessions() as session, session.begin():
        template = get(session, template_uuid)
        table = schema_info.describe(services.engine, template.table_name)
        if table is None:
            raise SpecError(
                [Problem(field="table_name", message=f"table {template.table_name!r} no longer exists")]
            )
        parsed = filter_rules.parse_filters(raw_filters, table.columns)
        sync = CozeManualSync(
            template_id=template.id,
            batch_size=batch_size,
            filters=json.dumps(filter_rules.to_json(parsed), ensure_ascii=False),
            status="queued",
            created_at=datetime.now(UTC),
        )
        session.add(sync)
    return sync


def queue_rows(services: Services, sync_id: int, on_batch=None) -> int:
    """Write one outbox row per matching table row, a batch per transaction. Resumable: rows
    already queued for this sync (a re-run after a crash) are skipped by key."""
    engine = services.engine
    with services.sessions() as session:
        sync = session.get(CozeManualSync, sync_id)
        template = session.get(CozeTemplate, sync.template_id) if sync else None
    if sync is None or template is None or sync.status in ("done", "failed", "delivering"):
        return 0
    table = schema_info.describe(engine, template.table_name)
    if table is None:
        _finish(services, sync_id, "failed", error=f"table {template.table_name!r} no longer exists")
        return 0
    reflected = schema_info.reflect(engine, table)
    parsed = filter_rules.parse_filters(json.loads(sync.filters or "[]"), table.columns)
    fields = json.loads(template.selected_fields)
    keys = [cast(reflected.c[k], Text).label(f"__key_{i}") for i, k in enumerate(table.primary_key)]
    query = filter_rules.apply_filters(select(*keys, *(reflected.c[f] for f in fields)), reflected, parsed)
    with engine.connect() as connection:
        total = connection.scalar(select(func.count()).select_from(query.subquery()))
        done = set(connection.scalars(select(OUTBOX.c.row_key).where(OUTBOX.c.sync_id == sync_id)))
    with engine.begin() as connection:
        connection.execute(
            update(CozeManualSync.__table__)
            .where(CozeManualSync.__table__.c.id == sync_id)
            .values(status="queuing", total_records=total, queued_records=len(done))
        )
    queued = len(done)
    ordered = query.order_by(*(reflected.c[k] for k in table.primary_key))
    with engine.connect() as reader:
        result = reader.execution_options(stream_results=True, yield_per=sync.batch_size).execute(ordered)
        for batch in result.mappings().partitions(sync.batch_size):
            now = utcnow()
            rows = []
            for row in batch:
                key = KEY_SEPARATOR.join(row[f"__key_{i}"] for i in range(len(table.primary_key)))
                if key in done:
                    continue
                rows.append(
                    {
                        "template_id": template.id,
                        "op": "sync",
                        "row_key": key,
                        "old_values": None,
                        "new_values": dump_values({f: row[f] for f in fields}),
                        "sync_id": sync_id,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
            with engine.begin() as connection:
                if rows:
                    connection.execute(insert(OUTBOX), rows)
                queued += len(rows)
                connection.execute(
                    update(CozeManualSync.__table__)
                    .where(CozeManualSync.__table__.c.id == sync_id)
                    .values(queued_records=queued)
                )
            if on_batch:
                on_batch(queued, total)
    with engine.begin() as connection:
        connection.execute(
            update(CozeManualSync.__table__)
            .where(CozeManualSync.__table__.c.id == sync_id)
            .values(status="delivering")
        )
    return queued


def progress(services: Services, sync_id: int) -> dict[str, Any]:
    """Counts so far; settles the sync (done, its template's last_sync_time) once every row of
    it is delivered or dead-lettered."""
    with services.sessions() as session:
        sync = session.get(CozeManualSync, sync_id)
        if sync is None:
            raise LookupError(f"no manual sync {sync_id}")
        statuses = dict(
            session.execute(
                select(OUTBOX.c.status, func.count())
                .where(OUTBOX.c.sync_id == sync_id)
                .group_by(OUTBOX.c.status)
            ).all()
        )
    synced = sync.records_synced if sync.status == "done" else int(statuses.get("delivered", 0))
    failed = sync.records_failed if sync.status == "done" else int(statuses.get("dead", 0))
    if sync.status == "delivering" and synced + failed >= (sync.total_records or 0):
        _finish(services, sync_id, "done", synced=synced, failed=failed)
        sync.status = "done"
    return {
        "sync_id": sync.id,
        "status": sync.status,
        "total_records": sync.total_records or 0,
        "queued_records": sync.queued_records,
        "records_synced": synced or 0,
        "records_failed": failed or 0,
        "error": sync.error,
    }


def settle_delivering(services: Services) -> None:
    """Settle every manual sync whose rows are all delivered or dead-lettered (the dispatcher
    calls this after each drain)."""
    with services.sessions() as session:
        ids = list(session.scalars(select(CozeManualSync.id).where(CozeManualSync.status == "delivering")))
    for sync_id in ids:
        progress(services, sync_id)


def progress_message(state: dict[str, Any]) -> str:
    """One line for people (REST answer, chat card): the seed's wording for a finished sync."""
    if state["status"] == "failed":
        return f"同步失败：{state['error']}"
    if state["status"] == "done":
        message = f"同步完成，成功同步 {state['records_synced']} 条记录"
        if state["records_failed"]:
            message += f"，{state['records_failed']} 条失败（见死信队列）"
        return message
    return f"同步进行中：已同步 {state['records_synced']} / {state['total_records']} 条记录"


def _finish(
    services: Services,
    sync_id: int,
    status: str,
    *,
    synced: int | None = None,
    failed: int | None = None,
    error: str | None = None,
) -> None:
    now = datetime.now(UTC)
    with services.sessions() as session, session.begin():
        sync = session.get(CozeManualSync, sync_id)
        sync.status, sync.finished_at, sync.error = status, now, error
        sync.records_synced, sync.records_failed = synced, failed
        if status == "done" and synced:
            template = session.get(CozeTemplate, sync.template_id)
            template.last_sync_time = now
