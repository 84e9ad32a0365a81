"""Feishu Contract's internal export endpoint (browser-session auth), as the bridge calls it.

Wire details are assumptions (the endpoint is undocumented; see docs/sandbox.md): success is
`{"code": 0, "msg": "success", "data": {"taskId": …}}`; a missing or stale session answers
HTTP 401, a csrf mismatch 403, throttling 429, a bad body 400 — each with a JSON
`{code, msg}` whose code repeats the HTTP status.
"""

from __future__ import annotations

import re

from flask import Blueprint, jsonify, request

from sandbox.contract import CONTRACT_BOT_APP_ID, CONTRACT_CHAT_ID, file_message_content
from sandbox.guard import state
from sandbox.seed_contract import COLUMNS
from sandbox.state import Message

bp = Blueprint("sandbox_contract", __name__)

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def _fail(status: int, msg: str):
    response = jsonify(code=status, msg=msg, data=None)
    response.status_code = status
    return response


def _auth_problem(world) -> tuple[int, str] | None:
    problem = world.cookie_problem(request.cookies, request.headers.get("csrf-token"))
    if problem is None:
        return None
    return (403 if "csrf" in problem else 401), problem


def _body_problem(body, finer: bool) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    bounds = body.get("searchCooperationByCreateTime")
    if not isinstance(bounds, list) or len(bounds) != 2 or not all(isinstance(b, str) for b in bounds):
        return "searchCooperationByCreateTime must be [start, end]"
    patterns = (DATE, DATETIME) if finer else (DATE,)
    if not all(any(p.match(b) for p in patterns) for b in bounds):
        return "bad time bounds: " + ("dates or datetimes" if finer else "dates (YYYY-MM-DD)") + " expected"
    if bounds[0] > bounds[1] + ("" if len(bounds[1]) > 10 else " 23:59:59"):
        return "start is after end"
    if not isinstance(body.get("keyword", ""), str) or not isinstance(body.get("searchTabEnumCode", 0), int):
        return "keyword must be a string and searchTabEnumCode an integer"
    return None


@bp.post("/clm/api/cooperation/exportCooperationRecords")
def export_records():
    st = state()
    world = st.contract
    status, answer = _export(st, world)
    with world.lock:
        world.calls.append({"status": status, "body": request.get_json(silent=True), "answer": answer})
    response = jsonify(answer)
    response.status_code = status
    return response


def _export(st, world) -> tuple[int, dict]:
    problem = _auth_problem(world)
    if problem:
        return problem[0], {"code": problem[0], "msg": problem[1], "data": None}
    roll = world.roll()
    if roll < world.faults.rate_limit:
        return 429, {"code": 429, "msg": "too many requests", "data": None}
    if roll < world.faults.rate_limit + world.faults.server_error:
        return 500, {"code": 500, "msg": "internal error (sandbox fault)", "data": None}
    if request.headers.get("Timezone-Offset") is None:
        return 400, {"code": 400, "msg": "Timezone-Offset header is required", "data": None}
    body = request.get_json(force=True, silent=True)
    problem_text = _body_problem(body, world.faults.finer_bounds)
    if problem_text:
        return 400, {"code": 400, "msg": problem_text, "data": None}
    task_id = st.next_id("exp")
    start, end = body["searchCooperationByCreateTime"]
    with world.lock:
        world.exports.append(
            {"task_id": task_id, "start": start, "end": end, "keyword": body.get("keyword", "")}
        )
    delay = world.faults.delay_seconds + world.roll() * world.faults.jitter_seconds
    world.schedule(delay, lambda: complete_export(st, task_id, start, end, body.get("keyword", "")))
    return 200, {"code": 0, "msg": "success", "data": {"taskId": task_id}}


def complete_export(st, task_id: str, start: str, end: str, keyword: str) -> None:
    """The export finished: post its file to the user's chat with the contract bot. Nothing is
    pushed to the app's webhook: its bot is not in that chat (`st.app_in_chat`), and Feishu sends
    a bot only its own chats' messages. The bridge finds the file by listing the chat."""
    world = st.contract
    rows = _matching(world, start, end, keyword)
    export_file = world.build_file(task_id, rows[: world.cap])
    faults, nth = world.faults, world.next_completion()
    if world.roll() < faults.lose_message or nth in faults.lose_nth:
        _mark(world, task_id, "lost")
        return
    copies = 2 if world.roll() < faults.duplicate_message or nth in faults.duplicate_nth else 1
    _mark(world, task_id, "duplicated" if copies == 2 else "sent")
    for copy in range(copies):
        this = (
            export_file
            if copy == 0
            else type(export_file)(
                f"{export_file.file_key}_dup", export_file.file_name, export_file.content, export_file.rows
            )
        )
        this.denied = world.roll() < faults.deny_download or nth in faults.deny_nth
        with world.lock:
            world.files[this.file_key] = this
        message = Message(
            st.next_id("om_"),
            CONTRACT_CHAT_ID,
            "file",
            file_message_content(this),
            "app",
            CONTRACT_BOT_APP_ID,
        )
        with st.lock:
            st.messages[message.message_id] = message


def _mark(world, task_id: str, outcome: str) -> None:
    with world.lock:
        for export in world.exports:
            if export["task_id"] == task_id:
                export["outcome"] = outcome


@bp.post("/clm/api/cooperation/searchCooperationRecords")
def search_records():
    """The cooperation list the export button sits on: one page of records and the total.
    (Assumed to exist with the export's filters; the planner counts with `pageSize: 1`.)"""
    st = state()
    world = st.contract
    problem = _auth_problem(world)
    if problem:
        return _fail(*problem)
    roll = world.roll()
    if roll < world.faults.rate_limit:
        return _fail(429, "too many requests")
    if roll < world.faults.rate_limit + world.faults.server_error:
        return _fail(500, "internal error (sandbox fault)")
    body = request.get_json(force=True, silent=True)
    problem_text = _body_problem(body, world.faults.finer_bounds)
    size, number = (body or {}).get("pageSize", 20), (body or {}).get("pageNum", 1)
    if problem_text or not isinstance(size, int) or not isinstance(number, int) or not 1 <= size <= 100:
        return _fail(400, problem_text or "pageSize must be 1..100 and pageNum an integer")
    start, end = body["searchCooperationByCreateTime"]
    rows = _matching(world, start, end, body.get("keyword", ""))
    with world.lock:
        world.count_calls += 1
    page = rows[(number - 1) * size : number * size]
    return jsonify(
        code=0,
        msg="success",
        data={"total": len(rows), "list": [dict(zip(COLUMNS, r.values, strict=True)) for r in page]},
    )


def _matching(world, start: str, end: str, keyword: str):
    rows = world.select(start, end)
    if keyword:
        rows = [r for r in rows if keyword in r.values[1] or keyword in r.values[2]]
    return rows


@bp.get("/clm/api/user/info")
def user_info():
    """What a cheap auth probe reads: who the session belongs to."""
    problem = _auth_problem(state().contract)
    if problem:
        return _fail(*problem)
    return jsonify(code=0, msg="success", data={"name": "沙箱用户", "tenant": "sandbox"})
