"""Authentication: app (tenant) access tokens.

Auth endpoints answer flat (`{"code", "msg", "tenant_access_token", "expire"}`), not in the
`data` envelope — lark-oapi reads them that way.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from sandbox import envelope
from sandbox.guard import finish, gateway_fault, state

bp = Blueprint("sandbox_auth", __name__)


@bp.post("/open-apis/auth/v3/tenant_access_token/internal")
def tenant_access_token_internal():
    st = state()
    fault, answer = gateway_fault(st)  # the gateway's 502s, resets and stalls reach this one too
    if answer is not None:
        return finish(st, answer, fault)
    body = request.get_json(force=True, silent=True) or {}
    if body.get("app_id") != st.config.app_id or body.get("app_secret") != st.config.app_secret:
        st.record_call(request.method, request.path, 400, envelope.INVALID_APP_CREDENTIALS)
        return envelope.fail(envelope.INVALID_APP_CREDENTIALS, "app secret invalid", 400)
    token, lifetime = st.issue_tenant_token()
    st.record_call(request.method, request.path, 200, 0)
    return jsonify(code=0, msg="ok", tenant_access_token=token, expire=lifetime)
