"""Bitable (多维表格): tables, fields and records of the seeded apps, paginated as Feishu does.

List endpoints take `page_size` (tables and fields ≤ 100, records ≤ 500; default 20) and an
opaque `page_token`, and answer `{items, has_more, page_token, total}`.

Value shapes follow Feishu's record docs ("多维表格记录数据结构"): text fields (type 1: text, email,
barcode) are written as a string but returned as segments `[{"text", "type"}]` — by `batch_get`
always, by the list endpoint only with `text_field_as_array=true` (else a plain string). Every
other type has one documented shape for both endpoints. Records are kept in the written shape.

Page tokens are offsets into the table's current order, so a listing that users edit between
pages sees rows shift: a row inserted before the cursor repeats one, a row deleted before it
skips one. The `paging_churn` fault makes such edits happen (see `_churn`).
"""

from __future__ import annotations

import json

from flask import Blueprint, request

from sandbox import envelope
from sandbox.control import apply_record_edits
from sandbox.guard import open_api, state
from sandbox.seed import TEXT, Table

bp = Blueprint("sandbox_bitable", __name__, url_prefix="/open-apis/bitable/v1/apps/<app_token>")


def _no_table():
    return envelope.fail(envelope.BITABLE_TABLE_NOT_FOUND, "table not found (TableIdNotFound)")


def _text_segments(value: object) -> list:
    """A text cell as `batch_get` returns it: a list of `{"text", "type"}` segments."""
    return value if isinstance(value, list) else [{"text": str(value), "type": "text"}]


def _plain_text(value: object) -> object:
    """A text cell as the list endpoint returns it by default: the segments' text, joined."""
    if isinstance(value, list):
        return "".join(str(s.get("text", "")) for s in value if isinstance(s, dict))
    return value


def shown_fields(table: Table, fields: dict, *, text_as_array: bool) -> dict:
    """A record's fields in the shape one endpoint answers (text is the only type that differs)."""
    text = {f.field_name for f in table.fields if f.type == TEXT}
    render = _text_segments if text_as_array else _plain_text
    return {name: render(value) if name in text else value for name, value in fields.items()}


def _shown(table: Table, record: dict, automatic: bool, *, text_as_array: bool) -> dict:
    """A record as the API returns it: with created/modified times only when asked for."""
    shown = {"record_id": record["record_id"],
             "fields": shown_fields(table, record["fields"], text_as_array=text_as_array)}
    if automatic:
        shown |= {k: record[k] for k in ("created_time", "last_modified_time") if k in record}
    return shown


def _flag(value: object) -> bool:
    """A boolean query or body flag: lark-oapi sends query booleans as "True"."""
    return value is True or str(value).lower() == "true"


def _churn(app_token: str, table: Table) -> None:
    """The `paging_churn` fault, between two pages of a listing: insert `add` rows at one random
    position and delete `delete` random rows, through the edit endpoint's own path (so a
    subscribed app gets the change events), while `pages` lasts."""
    st = state()
    with st.lock:
        plan = st.faults.paging_churn
        if not plan:
            return
        if "pages" in plan:
            plan["pages"] -= 1
            if plan["pages"] <= 0:
                st.faults.paging_churn = None
        ids = list(table.records)
        doomed = st.random.sample(ids, min(plan.get("delete", 0), len(ids)))
        at = st.random.randint(0, len(ids))
        primary = next((f.field_name for f in table.fields if f.is_primary), None)
        added = [{primary: st.next_id("CHURN-")[:18]} if primary else {} for _ in range(plan.get("add", 0))]
    if added or doomed:
        apply_record_edits(app_token, table.table_id, {"add": added, "delete": doomed, "at": at})


def _page(items: list, max_size: int):
    """Slice one page, or an error response for a bad page_size / page_token."""
    try:
        size = int(request.args.get("page_size", 20))
    except ValueError:
        size = -1
    if not 1 <= size <= max_size:
        return None, envelope.fail(envelope.BITABLE_BAD_PAGE_SIZE, f"page_size must be 1..{max_size}")
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
    automatic = _flag(request.args.get("automatic_fields"))
    as_array = _flag(request.args.get("text_field_as_array"))
    records = list(table.records.values())
    page, error = _page(records, 500)
    if error:
        return error
    page["items"] = [_shown(table, r, automatic, text_as_array=as_array) for r in page["items"]]
    if wanted := request.args.get("field_names"):  # a JSON array of names: only those fields
        try:
            names = set(json.loads(wanted))
        except (TypeError, ValueError):
            return envelope.fail(envelope.BITABLE_BAD_REQUEST, "field_names: a JSON array of field names")
        page["items"] = [{**r, "fields": {k: v for k, v in r["fields"].items() if k in names}}
                         for r in page["items"]]
    if page["has_more"]:
        _churn(app_token, table)
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
    automatic = _flag(body.get("automatic_fields"))
    found = [_shown(table, table.records[i], automatic, text_as_array=True)
             for i in ids if i in table.records]
    if _flag(body.get("with_shared_url")):
        found = [{**r, "shared_url": f"https://sandbox.example/record/{r['record_id']}"} for r in found]
    return envelope.ok({
        "records": found,
        "forbidden_record_ids": [],
        "absent_record_ids": [i for i in ids if i not in table.records],
    })
