"""User OAuth: the authorise page, the v2 token endpoint (code and refresh grants, with
single-use rotating refresh tokens) and `authen/v1/user_info`.

The authorise page auto-approves for the sandbox user (`?sandbox_user=` picks another known
one). Token answers are flat, not in the `data` envelope, as Feishu's v2 OAuth endpoint is.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from flask import Blueprint, jsonify, redirect, request

from sandbox import envelope
from sandbox.guard import finish, gateway_fault, open_api, state

bp = Blueprint("sandbox_authen", __name__)


@bp.get("/open-apis/authen/v1/authorize")
def authorize():
    st = state()
    args = request.args
    redirect_uri = args.get("redirect_uri", "")
    if args.get("client_id") != st.config.app_id or not redirect_uri:
        return jsonify(code=envelope.OAUTH_CLIENT_INVALID,
                       msg="unknown client_id or missing redirect_uri"), 400
    open_id = args.get("sandbox_user") or next(iter(st.users))
    if open_id not in st.users:
        return jsonify(code=envelope.OAUTH_CLIENT_INVALID, msg=f"no sandbox user {open_id}"), 400
    code = st.issue_auth_code(open_id, args.get("scope", ""), redirect_uri)
    query = {"code": code}
    if args.get("state"):
        query["state"] = args["state"]
    return redirect(f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(query)}", code=302)


USED = ("", "", "", 0.0)  # what an exchanged authorization code maps to (answers 20065)


def _oauth_error(code: int, error: str, description: str, http_status: int = 400):
    return jsonify(code=code, error=error, error_description=description), http_status


@bp.post("/open-apis/authen/v2/oauth/token")
def token():
    st = state()
    body = request.get_json(force=True, silent=True) or {}
    grant_type = str(body.get("grant_type", ""))
    fault, gateway_answer = gateway_fault(st)
    if gateway_answer is not None:  # an HTML 502 or a reset: nothing was processed
        st.log_refresh(grant_type, "error", -1)
        return finish(st, gateway_answer, fault)
    answer = _token(st, body, grant_type)
    payload = answer[0].get_json() if isinstance(answer, tuple) else answer.get_json()
    status = answer[1] if isinstance(answer, tuple) else 200
    st.log_refresh(grant_type, "ok" if status == 200 else "error", int(payload.get("code", -1)))
    st.record_call(request.method, request.path, status, int(payload.get("code", -1)), fault)
    return answer


def _token(st, body: dict, grant_type: str):
    if grant_type == "refresh_token":
        with st.lock:
            stall = st.faults.slow_refresh_seconds if st.faults.slow_refresh_count > 0 else 0.0
            if stall:
                st.faults.slow_refresh_count -= 1
            fail = st.faults.refresh_server_errors > 0
            if fail:
                st.faults.refresh_server_errors -= 1
        if stall:
            time.sleep(stall)  # the request is "on the wire": nothing has been rotated yet
        if fail:
            return _oauth_error(envelope.OAUTH_SERVER_ERROR, "server_error", "internal error (sandbox fault)",
                                500)
    if body.get("client_id") != st.config.app_id or body.get("client_secret") != st.config.app_secret:
        return _oauth_error(envelope.OAUTH_CLIENT_INVALID, "invalid_client", "The client secret is invalid.")
    if grant_type == "authorization_code":
        code = str(body.get("code", ""))
        with st.lock:
            found = st.auth_codes.get(code)
            if found is not None:
                st.auth_codes[code] = USED  # codes are single-use
        if found is USED:
            return _oauth_error(envelope.OAUTH_CODE_USED, "invalid_grant",
                                "The authorization code has been used.")
        if found is None:
            return _oauth_error(envelope.OAUTH_CODE_INVALID, "invalid_grant", "authorization code not found")
        open_id, scopes, redirect_uri, expires = found
        if expires < time.time():
            return _oauth_error(envelope.OAUTH_CODE_EXPIRED, "invalid_grant", "authorization code expired")
        if body.get("redirect_uri") and body["redirect_uri"] != redirect_uri:
            return _oauth_error(envelope.OAUTH_REDIRECT_MISMATCH, "invalid_grant", "redirect_uri mismatch")
        return jsonify(st.issue_user_tokens(open_id, scopes))
    if grant_type == "refresh_token":
        with st.lock:
            grant = st.refresh_tokens.get(str(body.get("refresh_token", "")))
            if grant is None:
                return _oauth_error(envelope.OAUTH_REFRESH_INVALID, "invalid_grant", "refresh token invalid")
            if grant.revoked:
                return _oauth_error(envelope.OAUTH_REFRESH_REVOKED, "invalid_grant", "refresh token revoked")
            if grant.used:
                return _oauth_error(envelope.OAUTH_REFRESH_USED, "invalid_grant",
                                    "refresh token already used")
            if grant.refresh_expires_at <= time.time():
                return _oauth_error(envelope.OAUTH_REFRESH_EXPIRED, "invalid_grant", "refresh token expired")
            grant.used = True  # single use: the new pair replaces it
            return jsonify(st.issue_user_tokens(grant.open_id, grant.scopes, grant.refresh_expires_at))
    return _oauth_error(envelope.OAUTH_GRANT_UNSUPPORTED, "unsupported_grant_type",
                        f"grant_type {grant_type!r} is not supported")


@bp.get("/open-apis/authen/v1/user_info")
@open_api
def user_info():
    st = state()
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    with st.lock:
        known = st.user_tokens.get(token)
    if known is None:  # a tenant token on a user-only API: 99991663 says so (generic code table)
        return envelope.fail(envelope.INVALID_TENANT_TOKEN, "Invalid access token for authorization. "
                             "Please make a request with token attached.", 400)
    open_id = known[0]
    return envelope.ok({"name": st.users.get(open_id, ""), "en_name": "", "open_id": open_id,
                        "union_id": "on_" + open_id.removeprefix("ou_"), "tenant_key": "sandbox_tenant_0001"})
