"""What every emulated open-platform call goes through: faults, then token checks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import current_app, request

from sandbox import envelope
from sandbox.state import SandboxState


def state() -> SandboxState:
    return current_app.extensions["sandbox"]


def open_api(view: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an /open-apis view: injected faults first (as a gateway would), then the access
    token (tenant or user), then the view. Each call is recorded for tests."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any):
        st = state()
        response = _fault(st) or _check_token(st) or view(*args, **kwargs)
        payload = response.get_json(force=True, silent=True) or {}
        st.record_call(request.method, request.path, response.status_code, payload.get("code", -1))
        return response

    return wrapper


def _fault(st: SandboxState):
    with st.lock:
        roll = st.random.random()
    if roll < st.faults.rate_limit:
        return envelope.fail(
            envelope.RATE_LIMITED, "request trigger frequency limit", 429,
            {"x-ogw-ratelimit-limit": "50", "x-ogw-ratelimit-reset": "1"},
        )
    if roll < st.faults.rate_limit + st.faults.server_error:
        return envelope.fail(envelope.INTERNAL_ERROR, "internal error (sandbox fault)", 500)
    return None


def _check_token(st: SandboxState):
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return envelope.fail(
            envelope.INVALID_TENANT_TOKEN,
            "Invalid access token for authorization. Please make a request with token attached.",
            401,
        )
    token = header.removeprefix("Bearer ").strip()
    user_verdict = st.user_token_state(token)
    if user_verdict == "expired":
        return envelope.fail(envelope.TOKEN_EXPIRED, "user access token expired", 400)
    if user_verdict == "valid":
        return None
    if token.startswith("u-"):
        return envelope.fail(envelope.INVALID_USER_TOKEN, "Invalid user access token.", 400)
    verdict = st.tenant_token_state(token)
    if verdict == "expired":
        return envelope.fail(envelope.INVALID_TENANT_TOKEN,
                             "Invalid access token for authorization (expired).", 400)
    if verdict == "invalid":
        return envelope.fail(envelope.INVALID_TENANT_TOKEN,
                             "Invalid access token for authorization.", 400)
    return None
