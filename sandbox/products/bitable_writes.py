"""Bitable record writes: `records/batch_create`, `batch_update`, `batch_delete` and the
single-record `POST …/records`, `PUT` / `DELETE …/records/{id}`, held to Feishu's rules.

Each call passes, in order (docs/sandbox.md, "Bitable record writes", gives each rule's source):
the injected write faults; the app and table (1254040 / 1254041); the `client_token` format
(uuidv4, else 1254037); the endpoint's rate (99991400, HTTP 429) and the table's (1254290); the
`client_token` (a repeat of a finished call answers that call's result and writes nothing, the
token on another request 1255006, while its first call runs 1254608); the body's shape and size
(≤ 1,000 records a create/update call, ≤ 500 a delete: 1254104); the table's write flag (a
second write while one runs: 1254291, nothing applied); then, holding the flag for
`bitable_write_latency_ms`, every value against its field's type (1254045, 1254060…, 1254043
for unknown records). A call is applied whole or not at all; an applied one sends a subscribed
app `drive.file.bitable_record_changed_v1` like any other edit. Records are kept in the shape
the read endpoints already serve (sandbox/products/bitable.py), so written rows read back like
seeded ones.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, request

from sandbox import envelope
from sandbox.bitable_writes import (
    CLIENT_TOKEN_CONFLICT,
    INVALID_CLIENT_TOKEN,
    RECORD_ADD_ONCE_EXCEED_LIMIT,
    RECORD_EXCEED_LIMIT,
    RECORD_NOT_FOUND,
    REQUEST_TIMEOUT,
    SAME_REQUEST_REPEATED,
    TOO_MANY_REQUEST,
    UUID4,
    WRITE_CONFLICT,
    WRONG_RECORD_ID,
    WRONG_REQUEST_BODY,
    WRONG_REQUEST_JSON,
    Refusal,
    add_options,
    stored_fields,
)
from sandbox.control import announce_record_changes, change_records
from sandbox.guard import open_api, state
from sandbox.state import SandboxState

bp = Blueprint("sandbox_bitable_writes", __name__,
               url_prefix="/open-apis/bitable/v1/apps/<app_token>/tables/<table_id>/records")

# Records per call: "单次调用最多新增/更新 1,000 条记录", "单次调用中最多删除 500 条记录".
LIMITS = {"batch_create": 1000, "batch_update": 1000, "batch_delete": 500}
TOKENED = {"create", "batch_create", "update", "batch_update"}  # take `client_token` (lark-oapi)
RATE_HEADERS = {"x-ogw-ratelimit-limit": "50", "x-ogw-ratelimit-reset": "1"}


@bp.post("/batch_create")
@open_api
def batch_create(app_token: str, table_id: str):
    return _write("batch_create", app_token, table_id)


@bp.post("/batch_update")
@open_api
def batch_update(app_token: str, table_id: str):
    return _write("batch_update", app_token, table_id)


@bp.post("/batch_delete")
@open_api
def batch_delete(app_token: str, table_id: str):
    return _write("batch_delete", app_token, table_id)


@bp.post("")
@open_api
def create(app_token: str, table_id: str):
    return _write("create", app_token, table_id)


@bp.put("/<record_id>")
@open_api
def update(app_token: str, table_id: str, record_id: str):
    return _write("update", app_token, table_id, record_id)


@bp.delete("/<record_id>")
@open_api
def delete(app_token: str, table_id: str, record_id: str):
    return _write("delete", app_token, table_id, record_id)


# -- one write --------------------------------------------------------------------------------


def _write(kind: str, app_token: str, table_id: str, record_id: str | None = None):
    st = state()
    faults, desk = st.faults, st.bitable_writes
    injected = _injected_error(st)
    if injected is not None:
        return injected
    if app_token not in st.apps:
        return envelope.fail(envelope.BITABLE_APP_NOT_FOUND, "BaseTokenNotFound", 200)
    table = st.table(app_token, table_id)
    if table is None:
        return envelope.fail(envelope.BITABLE_TABLE_NOT_FOUND, "TableIdNotFound", 200)
    token = request.args.get("client_token") if kind in TOKENED else None
    if token is not None and not UUID4.fullmatch(token):
        return envelope.fail(INVALID_CLIENT_TOKEN, "Invalid client token, make sure that it complies "
                                                   "with the specification.", 400)
    if not desk.admit_api(kind, faults.bitable_write_api_qps):
        return envelope.fail(envelope.RATE_LIMITED, "request trigger frequency limit", 429, RATE_HEADERS)
    key = (app_token, table_id)
    if not desk.admit_table(key, faults.bitable_writes_per_second):
        return envelope.fail(TOO_MANY_REQUEST, "TooManyRequest", 200)
    body = request.get_json(force=True, silent=True) if kind not in ("delete",) else {}
    if token is not None:
        fingerprint = json.dumps([kind, app_token, table_id, record_id, body,
                                  request.args.get("user_id_type")], sort_keys=True, default=str)
        seen, earlier = desk.claim(token, fingerprint, faults.bitable_client_token_ttl_seconds)
        if seen == "replay":
            return envelope.ok(earlier)
        if seen == "conflict":
            return envelope.fail(CLIENT_TOKEN_CONFLICT, "Client token conflict, please generate a new "
                                                        "client token and try again.", 400)
        if seen == "running":
            return envelope.fail(SAME_REQUEST_REPEATED, "Same API requests are submitted repeatedly.", 403)
    data: dict[str, Any] | None = None
    try:
        plan = _plan(kind, body, record_id)
        if not desk.begin(key):
            raise Refusal(WRITE_CONFLICT, "Write conflict")
        try:
            time.sleep(faults.bitable_write_latency_ms / 1000)
            with st.lock:
                data, actions, revision = _apply(st, app_token, table, kind, plan)
        finally:
            desk.end(key)
    except Refusal as refusal:
        return envelope.fail(refusal.code, refusal.msg, refusal.status)
    finally:
        if token is not None:
            desk.settle(token, data)
    announce_record_changes(app_token, table_id, revision, actions)
    with st.lock:
        lost = _take(st, "bitable_write_applied_then_5xx")
    if lost:  # applied and announced; the gateway gave up waiting
        return envelope.fail(REQUEST_TIMEOUT, "request timed out, please try again later (sandbox fault: "
                                              "the write was applied)", 504)
    return envelope.ok(data)


def _take(st: SandboxState, name: str) -> bool:
    """Whether write fault `name` fires: while `<name>_count` lasts, else with `<name>_rate`.
    Call under the state's lock."""
    faults = st.faults
    count = getattr(faults, f"{name}_count")
    if count > 0:
        setattr(faults, f"{name}_count", count - 1)
        return True
    rate = getattr(faults, f"{name}_rate")
    return rate > 0 and st.random.random() < rate


def _injected_error(st: SandboxState):
    """The `bitable_write_error_*` fault: 1254290, or 99991400 (HTTP 429), or HTTP 504 1255040."""
    with st.lock:
        if not _take(st, "bitable_write_error"):
            return None
        kind = st.random.choice(st.faults.bitable_write_error_kinds)
    if kind == "1254290":
        return envelope.fail(TOO_MANY_REQUEST, "TooManyRequest (sandbox fault)", 200)
    if kind == "429":
        return envelope.fail(envelope.RATE_LIMITED, "request trigger frequency limit", 429, RATE_HEADERS)
    return envelope.fail(REQUEST_TIMEOUT, "request timed out, please try again later (sandbox fault)", 504)


def _plan(kind: str, body: Any, record_id: str | None) -> list[Any]:
    """The call's records, checked for shape and count: field dicts (create), `(record_id,
    fields)` (update) or record ids (delete). Raises Refusal."""
    if not isinstance(body, dict):
        raise Refusal(WRONG_REQUEST_JSON, "WrongRequestJson: the body must be a JSON object")
    if kind in ("create", "update"):
        fields = body.get("fields")
        if not isinstance(fields, dict):
            raise Refusal(WRONG_REQUEST_BODY, "WrongRequestBody: fields (an object) is required")
        return [fields] if kind == "create" else [(record_id, fields)]
    if kind == "delete":
        return [record_id]
    records = body.get("records")
    if not isinstance(records, list) or not records:
        raise Refusal(WRONG_REQUEST_BODY, "WrongRequestBody: records (a non-empty list) is required")
    if len(records) > LIMITS[kind]:
        raise Refusal(RECORD_ADD_ONCE_EXCEED_LIMIT, f"RecordAddOnceExceedLimit: at most {LIMITS[kind]} "
                                                    f"records a call ({len(records)} given)")
    if kind == "batch_delete":
        if not all(isinstance(r, str) and r for r in records):
            raise Refusal(WRONG_RECORD_ID, "WrongRecordId: records must be record ids")
        return list(dict.fromkeys(records))
    plan = []
    for item in records:
        if not isinstance(item, dict) or not isinstance(item.get("fields"), dict):
            raise Refusal(WRONG_REQUEST_BODY, "WrongRequestBody: each record needs fields (an object)")
        if kind == "batch_create":
            plan.append(item["fields"])
        elif not isinstance(item.get("record_id"), str) or not item["record_id"]:
            raise Refusal(WRONG_RECORD_ID, "WrongRecordId: each record needs its record_id")
        else:
            plan.append((item["record_id"], item["fields"]))
    return plan


def _apply(st: SandboxState, app_token: str, table, kind: str, plan: list[Any]):
    """Validate every value, then change the table (call with the state's lock held): the
    answer's `data`, the change's actions and the table's new revision. Raises Refusal."""
    tables = st.apps[app_token].tables
    new_options: dict[str, list[str]] = {}
    edit: dict[str, list] = {"add": [], "update": [], "delete": []}
    if kind in ("create", "batch_create"):
        for fields in plan:
            converted = stored_fields(table, fields, tables, new_options)
            edit["add"].append({k: v for k, v in converted.items() if v not in (None, [])})
        limit = st.faults.bitable_max_records_per_table
        if limit and len(table.records) + len(plan) > limit:
            raise Refusal(RECORD_EXCEED_LIMIT, f"RecordExceedLimit: a table holds at most {limit} records")
    elif kind in ("update", "batch_update"):
        for rid, fields in plan:
            if rid not in table.records:
                raise Refusal(RECORD_NOT_FOUND, f"RecordIdNotFound: {rid}")
            converted = stored_fields(table, fields, tables, new_options)
            edit["update"].append({"record_id": rid,
                                   "fields": {k: None if v == [] else v for k, v in converted.items()}})
    else:
        missing = [rid for rid in plan if rid not in table.records]
        if missing:
            raise Refusal(RECORD_NOT_FOUND, f"RecordIdNotFound: {', '.join(missing[:5])}")
        edit["delete"] = plan
    add_options(table, new_options)
    actions, revision = change_records(st, table, edit)
    if kind == "batch_delete":
        return {"records": [{"deleted": True, "record_id": rid} for rid in plan]}, actions, revision
    if kind == "delete":
        return {"deleted": True, "record_id": plan[0]}, actions, revision
    shown = [{"record_id": a["record_id"], "id": a["record_id"],
              "fields": dict(table.records[a["record_id"]]["fields"])} for a in actions]
    if kind in ("create", "update"):
        return {"record": shown[0]}, actions, revision
    return {"records": shown}, actions, revision
