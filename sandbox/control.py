"""`/sandbox/*`: how tests and curious users drive the emulator (not part of Feishu's API)."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request

from sandbox.bitable_writes import new_table
from sandbox.events import bitable_changed, card_action, legacy_card_action, message_receive
from sandbox.guard import state
from sandbox.seed import PIPELINE_APP_TOKEN, App, Field
from sandbox.state import DEFAULT_CHAT_ID, DEFAULT_USER_OPEN_ID, SANDBOX_TENANT_KEY

bp = Blueprint("sandbox_control", __name__, url_prefix="/sandbox")

# The record write endpoints: …/records/batch_create|batch_update|batch_delete, POST …/records,
# PUT or DELETE …/records/<id> (group 1: the batch kind, or None for a single-record call).
WRITE_PATH = re.compile(r"/open-apis/bitable/v1/apps/[^/]+/tables/[^/]+/records"
                        r"(?:/(batch_create|batch_update|batch_delete)|/(?!batch_get|search)[^/]+)?")
SINGLE_WRITES = {"POST": "create", "PUT": "update", "DELETE": "delete"}


@bp.get("")
def overview():
    st = state()
    return jsonify(
        app_id=st.config.app_id,
        webhook_url=st.config.webhook_url,
        event_mode=st.event_mode,
        messages=len(st.messages),
        bot_sent=len(st.bot_sent),
        api_calls=len(st.api_calls),
        token_requests=st.token_requests,
        faults=vars(st.faults),
    )


@bp.post("/chat")
def chat():
    """Type a message into a chat as a user; the bot receives `im.message.receive_v1`."""
    st = state()
    body = request.get_json(force=True, silent=True) or {}
    text = body.get("text")
    if not isinstance(text, str) or not text:
        return jsonify(error="'text' (non-empty string) is required"), 400
    chat_id = str(body.get("chat_id") or DEFAULT_CHAT_ID)
    if not st.app_in_chat(chat_id):  # Feishu sends a bot only its own chats' messages
        return jsonify(error=f"the app's bot is not in chat {chat_id}: Feishu delivers no event for it"), 400
    user = str(body.get("user_open_id") or DEFAULT_USER_OPEN_ID)
    chat_type = "group" if body.get("chat_type") == "group" else "p2p"
    message = st.add_user_message(chat_id, user, json.dumps({"text": text}, ensure_ascii=False))
    document = st.sender.envelope(
        "im.message.receive_v1",
        message_receive(message, chat_type=chat_type, tenant_key=SANDBOX_TENANT_KEY),
        app_id=st.config.app_id,
        tenant_key=SANDBOX_TENANT_KEY,
    )
    encrypted = bool(body.get("encrypted", st.config.encrypt_events)) and bool(st.config.encrypt_key)
    st.sender.send(document, encrypted=encrypted)
    return jsonify(message_id=message.message_id, event_id=document["header"]["event_id"])


@bp.post("/card-action")
def click_card_button():
    """Click a button on a card the bot sent: {"message_id", "value"} (the button's value) and
    optionally "user_open_id"; the bot receives `card.action.trigger` — at the webhook, or over
    the long connection in websocket mode. Answers `webhook_status` (the HTTP status, or the
    ack's code over the long connection) and `answer` (the toast / card the app answered with:
    the webhook's body, or the ack's data). `"legacy": true` sends the click as an app
    configured with the legacy "message card request URL" gets it instead (no schema; SHA-1
    signature; `"encrypted"` optional) — always to the webhook: Feishu sends legacy card
    callbacks over no long connection."""
    st = state()
    body = request.get_json(force=True, silent=True) or {}
    message = st.messages.get(str(body.get("message_id")))
    if message is None or message.msg_type != "interactive":
        return jsonify(error="'message_id' must name a card the bot sent"), 400
    value = body.get("value")
    elements = json.loads(message.content).get("elements", [])
    buttons = [a.get("value") for e in elements if e.get("tag") == "action" for a in e.get("actions", [])]
    if value not in buttons:
        return jsonify(error="the card has no button with that value", buttons=buttons), 400
    user = str(body.get("user_open_id") or DEFAULT_USER_OPEN_ID)
    if body.get("legacy"):
        legacy = legacy_card_action(operator_open_id=user, value=value, message_id=message.message_id,
                                    chat_id=message.chat_id, tenant_key=SANDBOX_TENANT_KEY)
        return _legacy_answer(st.sender.deliver_legacy_card(legacy, encrypted=bool(body.get("encrypted"))))
    document = st.sender.envelope(
        "card.action.trigger",
        card_action(operator_open_id=user, value=value, message_id=message.message_id,
                    chat_id=message.chat_id, tenant_key=SANDBOX_TENANT_KEY, app_id=st.config.app_id),
        app_id=st.config.app_id,
        tenant_key=SANDBOX_TENANT_KEY,
    )
    encrypted = st.config.encrypt_events and bool(st.config.encrypt_key)
    attempt = st.sender.deliver_now(document, encrypted=encrypted)
    return jsonify(event_id=document["header"]["event_id"], webhook_status=attempt.status,
                   answer=_json_or_text(attempt.answer), transport=attempt.transport,
                   connection=attempt.connection, error=attempt.error)


@bp.post("/card-url-verification")
def legacy_card_challenge():
    """The challenge Feishu posts when the legacy "message card request URL" is saved:
    `{"challenge", "token", "type": "url_verification"}` (`{"challenge"?, "token"?}` override
    them). Answers the webhook's status and answer."""
    st = state()
    body = request.get_json(force=True, silent=True) or {}
    document = {"challenge": str(body.get("challenge") or st.next_id("challenge-")),
                "token": str(body.get("token") or st.config.verification_token),
                "type": "url_verification"}
    return _legacy_answer(st.sender.deliver_legacy_card(document), challenge=document["challenge"])


def _legacy_answer(attempt, **extra):
    return jsonify(webhook_status=attempt.status, webhook_answer=_json_or_text(attempt.answer), **extra)


def _json_or_text(answer: str | None):
    """An answer body as JSON when it is JSON (a toast, a card), else as it came (None: none)."""
    try:
        return json.loads(answer or "")
    except ValueError:
        return answer


@bp.get("/sent")
def sent():
    """What the bot sent (create and reply), oldest first; `?chat_id=` / `?parent_id=` filter."""
    st = state()
    chat_id, parent_id = request.args.get("chat_id"), request.args.get("parent_id")
    with st.lock:
        items = [
            {**m.to_api(st.config.app_id), "uuid": m.uuid}
            for m in st.bot_sent
            if (chat_id is None or m.chat_id == chat_id) and (parent_id is None or m.parent_id == parent_id)
        ]
    return jsonify(items=items, total=len(items))


@bp.get("/messages/<message_id>/history")
def message_history(message_id: str):
    """A message's contents in order: as sent, then after each patch (cards being updated)."""
    st = state()
    with st.lock:
        message = st.messages.get(message_id)
        if message is None:
            return jsonify(error=f"no message {message_id}"), 404
        versions = [*message.versions, message.content]
    return jsonify(message_id=message_id, msg_type=message.msg_type,
                   versions=[json.loads(v) for v in versions], updates=len(versions) - 1,
                   recalled=message.recalled, create_time=message.create_time)


@bp.post("/messages/<message_id>/recall")
def recall_message(message_id: str):
    """A user recalls a message: listings show it deleted, and Feishu refuses to patch it (230011)."""
    st = state()
    with st.lock:
        message = st.messages.get(message_id)
        if message is None:
            return jsonify(error=f"no message {message_id}"), 404
        message.recalled = True
    return jsonify(message_id=message_id, recalled=True)


@bp.post("/messages/<message_id>/age")
def age_message(message_id: str):
    """Move a message's create_time back `{"days": d}` (patches of messages older than 14 days are
    refused with 230031)."""
    st = state()
    try:
        days = float((request.get_json(force=True, silent=True) or {}).get("days"))
    except (TypeError, ValueError):
        return jsonify(error="'days' (a number) is required"), 400
    if days < 0:
        return jsonify(error="'days' must not be negative"), 400
    with st.lock:
        message = st.messages.get(message_id)
        if message is None:
            return jsonify(error=f"no message {message_id}"), 404
        message.create_time -= int(days * 24 * 3600 * 1000)
        return jsonify(message_id=message_id, create_time=message.create_time)


@bp.get("/uploads/<file_key>")
def uploaded_file(file_key: str):
    """A file the bot uploaded (to send as a file message), as the recipient would download it."""
    st = state()
    with st.lock:
        found = st.uploads.get(file_key)
    if found is None:
        return jsonify(error=f"no upload {file_key}"), 404
    name, content = found
    return Response(content, mimetype="application/octet-stream",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"})


@bp.get("/chats/<chat_id>/messages")
def conversation(chat_id: str):
    st = state()
    with st.lock:
        items = [m.to_api(st.config.app_id) for m in st.messages.values() if m.chat_id == chat_id]
    items.sort(key=lambda m: int(m["create_time"]))
    return jsonify(items=items)


@bp.get("/deliveries")
def deliveries():
    st = state()
    attempts = st.sender.attempts()
    return jsonify(items=[vars(a) for a in attempts], total=len(attempts))


@bp.get("/calls")
def calls():
    st = state()
    with st.lock:
        return jsonify(items=list(st.api_calls), total=len(st.api_calls), token_requests=st.token_requests)


@bp.post("/faults")
def faults():
    st = state()
    try:
        st.faults.update(request.get_json(force=True, silent=True) or {})
    except (TypeError, ValueError) as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(faults=vars(st.faults))


@bp.post("/reset")
def reset():
    state().reset()
    return jsonify(ok=True)


@bp.post("/tokens/expire")
def expire_tenant_tokens():
    """Every tenant token issued so far now answers 99991663 (new ones are fine)."""
    return jsonify(expired=state().expire_tenant_tokens())


@bp.post("/oauth/expire")
def expire_user_tokens():
    """User access tokens issued so far (`{"open_id": …}` to pick one user) answer 99991677."""
    body = request.get_json(force=True, silent=True) or {}
    return jsonify(expired=state().expire_user_tokens(body.get("open_id")))


@bp.post("/oauth/revoke")
def revoke_refresh_tokens():
    """The user revoked the app: every refresh token (of `open_id`, or all) stops working."""
    body = request.get_json(force=True, silent=True) or {}
    return jsonify(revoked=state().revoke_refresh_tokens(body.get("open_id")))


@bp.get("/oauth/refreshes")
def refreshes():
    """Every call to the v2 token endpoint, oldest first (grant_type, outcome, code)."""
    st = state()
    with st.lock:
        items = list(st.refresh_log)
    return jsonify(items=items, total=len(items),
                   refreshes=sum(1 for i in items if i["grant_type"] == "refresh_token"))


@bp.post("/lifetimes")
def lifetimes():
    """Token lifetimes in seconds for tokens issued from now on:
    `{"tenant_token": s, "user_token": s, "refresh_token": s}` (any subset)."""
    st = state()
    body = request.get_json(force=True, silent=True) or {}
    fields = {"tenant_token": "tenant_token_lifetime", "user_token": "user_token_lifetime",
              "refresh_token": "refresh_token_lifetime"}
    try:
        values = {fields[k]: int(v) for k, v in body.items() if k in fields}
    except (TypeError, ValueError):
        return jsonify(error="lifetimes must be whole seconds"), 400
    if any(v <= 0 for v in values.values()):
        return jsonify(error="lifetimes must be positive"), 400
    with st.lock:
        for name, value in values.items():
            setattr(st.config, name, value)
        return jsonify({k: getattr(st.config, v) for k, v in fields.items()})


def _notify(event_type: str, app_token: str, table_id: str, revision: int, groups: list[list[dict]],
            *, duplicate: bool = False) -> list[str]:
    """Send one change event per group of actions to the webhook, if the app is subscribed (as
    Feishu only notifies subscribed files). Returns the event ids sent."""
    st = state()
    with st.lock:
        subscribed = app_token in st.subscriptions
    if not subscribed:
        return []
    now_ms = int(time.time() * 1000)
    event_ids = []
    for actions in groups:
        doc = st.sender.envelope(
            event_type, bitable_changed(app_token, table_id, revision, DEFAULT_USER_OPEN_ID, actions, now_ms),
            app_id=st.config.app_id, tenant_key=SANDBOX_TENANT_KEY,
        )
        event_ids.append(doc["header"]["event_id"])
        for _ in range(2 if duplicate else 1):
            st.sender.send(doc, encrypted=st.config.encrypt_events and bool(st.config.encrypt_key))
    return event_ids


@bp.post("/bitable/<app_token>/<table_id>/records")
def edit_records(app_token: str, table_id: str):
    """Edit a sandbox bitable as a user would: `{"add": [{fields}], "update": [{"record_id",
    "fields"}], "delete": [record_id]}`. A subscribed app then gets
    `drive.file.bitable_record_changed_v1` at the webhook — one event for the whole edit, or one
    per record with `"split": true`; `"duplicate": true` delivers each event twice (same event_id).
    `"at": n` puts the added records at position n of the table's order (default: the end), so
    rows after them shift as they do in a view."""
    body = request.get_json(force=True, silent=True) or {}
    try:
        return jsonify(apply_record_edits(app_token, table_id, body))
    except LookupError as exc:
        return jsonify(error=str(exc.args[0])), 404


def apply_record_edits(app_token: str, table_id: str, body: dict) -> dict:
    """One edit of a sandbox table, then its change events: the single path every record change
    takes (the endpoint above, and the `paging_churn` fault between pages of a listing), so a
    subscribed app hears of each. Raises LookupError naming a missing table or record."""
    st = state()
    table = st.table(app_token, table_id)
    if table is None:
        raise LookupError(f"no table {table_id} in app {app_token}")
    with st.lock:
        actions, revision = change_records(st, table, body)
    event_ids = announce_record_changes(app_token, table_id, revision, actions, split=bool(body.get("split")),
                                        duplicate=bool(body.get("duplicate")))
    return {"actions": actions, "revision": revision, "subscribed": app_token in st.subscriptions,
            "event_ids": event_ids}


def announce_record_changes(app_token: str, table_id: str, revision: int, actions: list[dict], *,
                            split: bool = False, duplicate: bool = False) -> list[str]:
    """`drive.file.bitable_record_changed_v1` for one edit, to a subscribed app: one event for
    all its actions, or one per record with `split`. Returns the event ids sent."""
    groups = ([[a] for a in actions] if split else [actions]) if actions else []
    return _notify("drive.file.bitable_record_changed_v1", app_token, table_id, revision, groups,
                   duplicate=duplicate)


def change_records(st, table, body: dict) -> tuple[list[dict], int]:
    """Apply `{"add", "update", "delete", "at"?}` to `table` (call with `st.lock` held): records
    keep their written shape, a None value clears a cell. Returns the actions (added records
    first, in order) and the table's new revision. Raises LookupError for an unknown record."""
    actions: list[dict] = []
    now_ms = int(time.time() * 1000)
    added: dict[str, dict] = {}
    for fields in body.get("add") or []:
        record_id = st.next_id("rec")[:20]
        added[record_id] = {"record_id": record_id, "fields": dict(fields),
                            "created_time": now_ms, "last_modified_time": now_ms}
        actions.append({"record_id": record_id, "action": "record_added"})
    _insert_records(table.records, added, body.get("at"))
    for change in body.get("update") or []:
        record = table.records.get(change.get("record_id"))
        if record is None:
            raise LookupError(f"no record {change.get('record_id')}")
        for name, value in (change.get("fields") or {}).items():
            if value is None:
                record["fields"].pop(name, None)
            else:
                record["fields"][name] = value
        record["last_modified_time"] = now_ms
        actions.append({"record_id": record["record_id"], "action": "record_edited"})
    for record_id in body.get("delete") or []:
        if table.records.pop(record_id, None) is not None:
            actions.append({"record_id": record_id, "action": "record_deleted"})
    # Formula and lookup values follow; records changed only that way get no event.
    table.recompute()
    table.revision += 1
    return actions, table.revision


def _insert_records(records: dict[str, dict], added: dict[str, dict], at: int | None) -> None:
    """Add records at position `at` of the table's order (None: the end), in place."""
    if at is None:
        records.update(added)
        return
    rows = list(records.items())
    position = max(0, min(int(at), len(rows)))
    records.clear()
    records.update([*rows[:position], *added.items(), *rows[position:]])


@bp.post("/bitable/<app_token>/<table_id>/fields")
def edit_fields(app_token: str, table_id: str):
    """Add fields to a sandbox table: `{"add": [{"field_name", "type", "property"?}]}`; a subscribed
    app gets `drive.file.bitable_field_changed_v1`."""
    st = state()
    body = request.get_json(force=True, silent=True) or {}
    table = st.table(app_token, table_id)
    if table is None:
        return jsonify(error=f"no table {table_id} in app {app_token}"), 404
    actions = []
    with st.lock:
        for spec in body.get("add") or []:
            field = Field(st.next_id("fld")[:16], str(spec["field_name"]), int(spec.get("type", 1)),
                          spec.get("property"))
            table.fields.append(field)
            actions.append({"field_id": field.field_id, "action": "field_added"})
        table.revision += 1
        revision = table.revision
    _notify("drive.file.bitable_field_changed_v1", app_token, table_id, revision,
            [actions] if actions else [])
    return jsonify(actions=actions, subscribed=app_token in st.subscriptions)


@bp.post("/bitable/tables")
def create_bitable_table():
    """A target table for writes: `{"app_token"?, "app_name"?, "name", "fields": [{"field_name",
    "type", "property"?, "options"?}]}` → `{"app_token", "table_id"}`. The table starts empty, its
    first field primary; without `app_token` it goes into the pipeline app "管道演示", with an
    unknown one a new app of that token is made. The app's bot can read and write it (and, as
    its manager, subscribe to it). Bad input → 400 with the reason."""
    st = state()
    body = request.get_json(force=True, silent=True) or {}
    app_token = body.get("app_token") or PIPELINE_APP_TOKEN
    if not isinstance(app_token, str) or not app_token.isascii() or not app_token.isalnum():
        return jsonify(error="'app_token' must be letters and digits"), 400
    with st.lock:
        table_id = st.next_id("tbl")[:17]
        try:
            table = new_table(table_id, body.get("name"), body.get("fields"),
                              lambda n: f"fld{table_id[3:]}{n:03d}")
        except ValueError as exc:
            return jsonify(error=str(exc)), 400
        app = st.apps.get(app_token)
        if app is None:
            app = st.apps[app_token] = App(app_token, str(body.get("app_name") or app_token), {})
        app.tables[table_id] = table
    return jsonify(app_token=app_token, table_id=table_id,
                   fields=[f.to_api() for f in table.fields])


@bp.get("/bitable/tables/<app_token>/<table_id>/rows")
def bitable_rows(app_token: str, table_id: str):
    """Every record of a table in its order, fields as stored (text a string, numbers, dates
    in ms, empty cells left out): `{"rows": [{"record_id", "fields"}], "total", "revision"}`."""
    st = state()
    table = st.table(app_token, table_id)
    if table is None:
        return jsonify(error=f"no table {table_id} in app {app_token}"), 404
    with st.lock:
        rows = [{"record_id": r["record_id"], "fields": dict(r["fields"])} for r in table.records.values()]
        return jsonify(rows=rows, total=len(rows), revision=table.revision)


@bp.get("/bitable/writes")
def bitable_writes():
    """Write calls answered so far, per endpoint and code, and writes refused with 1254291."""
    st = state()
    with st.lock:
        calls = [c for c in st.api_calls if c["method"] in ("POST", "PUT", "DELETE")
                 and WRITE_PATH.fullmatch(c["path"])]
    counts: dict[str, dict[str, int]] = {}
    for call in calls:
        kind = WRITE_PATH.fullmatch(call["path"]).group(1) or SINGLE_WRITES[call["method"]]
        per_code = counts.setdefault(kind, {})
        per_code[str(call["code"])] = per_code.get(str(call["code"]), 0) + 1
    return jsonify(calls=counts, total=len(calls), conflicts=st.bitable_writes.conflicts)


@bp.post("/files/<file_token>/permission")
def set_file_permission(file_token: str):
    """The app's role on a file, as its owner shared it: `{"role": "read" | "edit" | "manage"}`.
    Only "manage" (owner or manager, the default) may subscribe to the file's change events."""
    st = state()
    role = (request.get_json(force=True, silent=True) or {}).get("role")
    if role not in ("read", "edit", "manage"):
        return jsonify(error="role must be read, edit or manage"), 400
    with st.lock:
        st.file_roles[file_token] = role
    return jsonify(file_token=file_token, role=role)


# -- Feishu Contract ------------------------------------------------------------------


def contract_curl(base_url: str, credentials: dict[str, str], start: str = "2023-01-01",
                  end: str = "2023-12-01") -> str:
    """The export request as a browser's "Copy as cURL" would give it (for `export auth`)."""
    cookie = (f"session={credentials['session']}; session_list={credentials['session']}; "
              f"sl_session={credentials['sl_session']}; clm_csrf_token={credentials['csrf_token']}")
    body = json.dumps({"keyword": "", "searchTabEnumCode": 0, "searchCooperationByCreateTime": [start, end]})
    return (f"curl --location '{base_url}/clm/api/cooperation/exportCooperationRecords' \\\n"
            "--header 'Timezone-Offset: -480' \\\n"
            f"--header 'csrf-token: {credentials['csrf_token']}' \\\n"
            f"--header 'Cookie: {cookie}' \\\n"
            "--header 'Content-Type: application/json' \\\n"
            f"--data '{body}'")


@bp.get("/contract/curl")
def contract_curl_view():
    """A fresh copy of the export request with the current session, as plain text."""
    world = state().contract
    return contract_curl(request.host_url.rstrip("/"), world.credentials()), 200, {
        "Content-Type": "text/plain; charset=utf-8"}


@bp.post("/contract/expire-session")
def contract_expire_session():
    """The browser session behind the copied curl stops working (a new one replaces it)."""
    state().contract.expire_session()
    return jsonify(ok=True)


@bp.post("/contract/faults")
def contract_faults():
    world = state().contract
    try:
        world.faults.update(request.get_json(force=True, silent=True) or {})
    except (TypeError, ValueError) as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(faults=vars(world.faults))


@bp.get("/contract/exports")
def contract_exports():
    world = state().contract
    with world.lock:
        return jsonify(items=list(world.exports), calls=len(world.calls), count_calls=world.count_calls,
                       total=len(world.records))


@bp.post("/coze/faults")
def coze_faults():
    """`down`, `slow_seconds`, `rate_limit`, `server_error`."""
    world = state().coze
    try:
        world.faults.update(request.get_json(force=True, silent=True) or {})
    except (TypeError, ValueError) as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(faults=vars(world.faults))


@bp.get("/coze/calls")
def coze_calls():
    """Every workflow call in arrival order (`?ok=1`: only the successful ones)."""
    world = state().coze
    with world.lock:
        calls = [c for c in world.calls if c["code"] == 0] if request.args.get("ok") else list(world.calls)
    return jsonify(items=calls, count=len(calls))


@bp.post("/coze/workflows")
def coze_workflows():
    """Publish more workflow ids or accept more keys: {"workflows": [...], "keys": [...]}."""
    world = state().coze
    body = request.get_json(force=True, silent=True) or {}
    with world.lock:
        world.workflows.update(str(w) for w in body.get("workflows", []))
        world.keys.update(str(k) for k in body.get("keys", []))
    return jsonify(workflows=sorted(world.workflows))


@bp.post("/coze/reset")
def coze_reset():
    world = state().coze
    with world.lock:
        world.calls.clear()
    world.faults.update({"down": False, "slow_seconds": 0, "rate_limit": 0, "server_error": 0})
    return jsonify(ok=True)


@bp.post("/messenger/scan")
def messenger_scan():
    """Scan every QR code the web messenger's login page is showing."""
    world = state().contract
    with world.lock:
        for qr in world.qr_codes:
            world.qr_codes[qr] = True
        return jsonify(scanned=len(world.qr_codes))
