"""Coze's workflow API: `POST /v1/workflow/run`, as cozepy calls it.

Success: `{"code": 0, "msg": "", "data": "<JSON string>", "execute_id", "debug_url", "usage",
"detail": {"logid"}}` plus the `x-tt-logid` header. Errors use the same envelope with a
non-zero code (assumed HTTP 200 for business errors, 429 for rate limits); a gateway outage
answers 502 with an HTML body, which cozepy turns into code = HTTP status.
"""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, jsonify, request

from sandbox.guard import state

bp = Blueprint("sandbox_coze", __name__)


def _answer(code: int, msg: str, logid: str, status: int = 200, **extra) -> Response:
    response = jsonify(code=code, msg=msg, detail={"logid": logid}, **extra)
    response.status_code = status
    response.headers["x-tt-logid"] = logid
    return response


@bp.post("/v1/workflow/run")
def run_workflow():
    world = state().coze
    serial = world.next_id()
    logid = f"20261125sandbox{serial:010d}"
    body = request.get_json(force=True, silent=True)
    entry = {"serial": serial, "at": time.time(), "workflow_id": None, "parameters": None, "code": None}
    if world.faults.slow_seconds:
        time.sleep(world.faults.slow_seconds)
    if world.faults.down:
        entry["code"] = 502
        world.record(entry)
        return Response("<html><body>502 Bad Gateway</body></html>", status=502, content_type="text/html")
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token not in world.keys:
        entry["code"] = 4100
        world.record(entry)
        return _answer(4100, "The token you entered is incorrect.", logid, status=401)
    if not isinstance(body, dict) or not isinstance(body.get("workflow_id"), str):
        entry["code"] = 4000
        world.record(entry)
        return _answer(
            4000, "The requested parameter is invalid: workflow_id is required.", logid, status=400
        )
    entry["workflow_id"], entry["parameters"] = body["workflow_id"], body.get("parameters")
    roll = world.roll()
    if roll < world.faults.rate_limit:
        entry["code"] = 4009
        world.record(entry)
        return _answer(4009, "The request frequency is too high, please retry later.", logid, status=429)
    if roll < world.faults.rate_limit + world.faults.server_error:
        entry["code"] = 5000
        world.record(entry)
        return _answer(5000, "Internal server error (sandbox fault).", logid, status=500)
    if body["workflow_id"] not in world.workflows:
        entry["code"] = 4200
        world.record(entry)
        return _answer(4200, f"Workflow {body['workflow_id']} not found or not published.", logid)
    if body.get("parameters") is not None and not isinstance(body["parameters"], dict):
        entry["code"] = 4000
        world.record(entry)
        return _answer(4000, "parameters must be an object.", logid, status=400)
    execute_id = f"7{serial:018d}"
    entry["code"] = 0
    entry["execute_id"] = execute_id
    world.record(entry)
    return _answer(
        0,
        "",
        logid,
        data=json.dumps({"output": "ok", "received": len(body.get("parameters") or {})}),
        execute_id=execute_id,
        debug_url=f"https://www.coze.cn/work_flow?execute_id={execute_id}&workflow_id={body['workflow_id']}",
        usage={"input_count": 0, "output_count": 0, "token_count": 0},
    )
