"""Long connection (长连接): endpoint discovery, `POST /callback/ws/endpoint`.

lark-oapi's `ws.Client` posts `{"AppID", "AppSecret"}` here (at the domain's root, not under
/open-apis) and connects to the URL it is given. Refusals come as HTTP 200 with a non-zero code
(as Feishu answers an invalid app id); lark-oapi raises every code but 1 and 1000040343 as a
ClientException, which `start()` does not retry. Discovery works whatever the subscription mode:
Feishu's console only lets an app switch to long connection once a client is connected.
The gateway's faults (stall, reset, HTML 502) apply here too: lark-oapi posts with no timeout
(oapi-sdk-python #169), which a `stall` shows.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from sandbox.guard import finish, gateway_fault, state

bp = Blueprint("sandbox_ws_endpoint", __name__)

SYSTEM_BUSY = 1  # lark-oapi retries it (ServerException)
AUTH_FAILED = 514
APP_ID_INVALID = 1000040346


@bp.post("/callback/ws/endpoint")
def ws_endpoint():
    st = state()
    fault, answer = gateway_fault(st)
    if answer is not None:
        return finish(st, answer, fault)
    body = request.get_json(force=True, silent=True)
    body = body if isinstance(body, dict) else {}
    app_id, secret = body.get("AppID"), body.get("AppSecret")
    if not isinstance(app_id, str) or not app_id or not isinstance(secret, str) or not secret:
        return finish(st, _refusal(AUTH_FAILED, "auth failed: AppID and AppSecret are required"), fault)
    if app_id != st.config.app_id:
        return finish(st, _refusal(APP_ID_INVALID, "app_id is invalid"), fault)
    if secret != st.config.app_secret:
        return finish(st, _refusal(AUTH_FAILED, "auth failed"), fault)
    try:
        data = st.long_connection.issue_endpoint()
    except RuntimeError:  # the sandbox is shutting down
        return finish(st, _refusal(SYSTEM_BUSY, "system busy"), fault)
    return finish(st, jsonify(code=0, msg="ok", data=data), fault)


def _refusal(code: int, msg: str):
    return jsonify(code=code, msg=msg, data={"URL": ""})
