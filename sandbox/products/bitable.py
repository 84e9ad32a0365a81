"""Bitable (多维表格): tables, fields and records of the seeded apps, paginated as Feishu does.

List endpoints take `page_size` (tables and fields ≤ 100, records ≤ 500; default 20) and an
opaque `page_token`, and answer `{items, has_more, page_token, total}`.
"""

from __future__ import annotations

from flask import Blueprint, request

from sandbox import envelope
from sandbox.guard import open_api, state

bp = Blueprint("sandbox_bitable", __name__, url_prefix="/open-apis/bitable/v1/apps/<app_token>")


def _no_table():
    return envelope.fail(envelope.BITABLE_TABLE_NOT_FOUND, "table not found (TableIdNotFound)")


def _shown(record: dict, automatic: bool) -> dict:
    """A record as the API returns it: with created/modified times only when asked for."""
    return record if automatic else {"record_id": record["record_id"], "fields": record["fields"]}


def _page(items: list, max_size: int):
    """Slice one page, or an error response for a bad page_size / page_token."""
    try:
        size = int(request.args.get("page_size", 20))
    except ValueError:
        size = -1
    if not 1 <= size <= max_size:
        return None, envelope.fail(envelope.BITABLE_BAD_REQUEST, f"page_size must be 1..{max_size}")
    token = request.args.get("page_token", "")
    if token and not (token.startswith("pt") and token[2:].isdigit()):
        return None, envelope.fail(envelope.BITABLE_BAD_REQUEST, "invalid page_token")
    start = int(token[2:]) if token else 0
    chunk = items[start:start + size]
    more = start + size < len(items)
    return {"items": chunk, "has_more": more, "page_token": f"pt{start + size}" if more else "",
            "total": len(items)}, None


@bp.get("/tables")
@open_api
def list_tables(app_token: str):
    app = state().apps.get(app_token)
    if app is None:
        return envelope.fail(envelope.BITABLE_APP_NOT_FOUND, "app not found (NOTEXIST)")
    items = [{"table_id": t.table_id, "name": t.name, "revision": t.revision} for t in app.tables.values()]
    page, error = _page(items, 100)
    return error or envelope.ok(page)


@bp.get("/tables/<table_id>/fields")
@open_api
def list_fields(app_token: str, table_id: str):
    table = state().table(app_token, table_id)
    if table is None:
        return _no_table()
    page, error = _page([f.to_api() for f in table.fields], 100)
    return error or envelope.ok(page)


@bp.get("/tables/<table_id>/records")
@open_api
def list_records(app_token: str, table_id: str):
    table = state().table(app_token, table_id)
    if table is None:
        return _no_table()
    automatic = request.args.get("automatic_fields", "").lower() == "true"  # the SDK sends "True"
    records = list(table.records.values())
    page, error = _page(records, 500)
    if error:
        return error
    page["items"] = [_shown(r, automatic) for r in page["items"]]
    return envelope.ok(page)


@bp.post("/tables/<table_id>/records/batch_get")
@open_api
def batch_get_records(app_token: str, table_id: str):
    table = state().table(app_token, table_id)
    if table is None:
        return _no_table()
    body = request.get_json(force=True, silent=True) or {}
    ids = body.get("record_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
        return envelope.fail(envelope.BITABLE_BAD_REQUEST, "record_ids: 1..100 ids")
    automatic = bool(body.get("automatic_fields"))
    found = [table.records[i] for i in ids if i in table.records]
    return envelope.ok({
        "records": [_shown(r, automatic) for r in found],
        "forbidden_record_ids": [],
        "absent_record_ids": [i for i in ids if i not in table.records],
    })
