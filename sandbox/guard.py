"""What every emulated open-platform call goes through: the gateway's faults, then token
checks, then IM's throttling of message sends."""

from __future__ import annotations

import functools
import re
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, request

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
        fault, answer = gateway_fault(st)
        response = answer or _fault(st) or _check_token(st) or _throttle(st) or view(*args, **kwargs)
        return finish(st, response, fault)

    return wrapper


def finish(st: SandboxState, response: Response, fault: str = "") -> Response:
    """Note the call for tests (a reset connection has no status, 0; an HTML page no code, -1),
    then, for a reset, drop the connection: the call is on record before the client knows."""
    payload = response.get_json(force=True, silent=True)
    code = payload.get("code", -1) if isinstance(payload, dict) else -1
    st.record_call(request.method, request.path, 0 if fault == "reset" else response.status_code, code, fault)
    if fault == "reset":
        _drop_connection()
    return response


# -- the gateway in front of every endpoint -------------------------------------------------

HTML_502 = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n")


GATEWAY_ORDER = ("reset", "html_502", "stall")  # when several would fire, the first wins


def gateway_fault(st: SandboxState) -> tuple[str, Response | None]:
    """The gateway's own doing, before any product sees the call: ("", None) normally;
    ("html_502" | "reset", answer) when it answers itself; ("stall", None) once it has held the
    request `stall_seconds` (the call is then processed, long after the client gave up)."""
    with st.lock:
        faults = st.faults
        fired = next((name for name in GATEWAY_ORDER if faults.take(name, st.random.random)), "")
        stall_seconds = faults.stall_seconds
    if fired == "reset":  # `finish` drops the connection once the call is on record
        return fired, Response("connection reset (sandbox fault)", status=502, content_type="text/plain")
    if fired == "html_502":
        return fired, Response(HTML_502, status=502, content_type="text/html")
    if fired == "stall":
        time.sleep(stall_seconds)
    return fired, None


def _drop_connection() -> None:
    """Close the client's connection without an answer (SO_LINGER 0: a reset). The response the
    view returns is never seen: writing it fails quietly (werkzeug counts a dropped connection).
    Without a socket (Flask's test client) the placeholder 502 is what the caller gets."""
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)


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


# Feishu's wording (generic error-code table) for 99991663 and 99991668 alike.
INVALID_TOKEN_MSG = "Invalid access token for authorization. Please make a request with token attached."


def _check_token(st: SandboxState):
    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not token:  # no header, no "Bearer " prefix, or nothing after it: Feishu's "Need a token"
        return envelope.fail(
            envelope.TOKEN_MISSING,
            "Missing access token for authorization. Please make a request with token attached.",
            400,
        )
    user_verdict = st.user_token_state(token)
    if user_verdict == "expired":
        return envelope.fail(envelope.TOKEN_EXPIRED, "token expire", 400)
    if user_verdict == "valid":
        return None
    if token.startswith("u-"):
        return envelope.fail(envelope.INVALID_USER_TOKEN, INVALID_TOKEN_MSG, 400)
    verdict = st.tenant_token_state(token)
    if verdict == "expired":
        return envelope.fail(envelope.INVALID_TENANT_TOKEN, INVALID_TOKEN_MSG, 400)
    if verdict == "invalid":
        return envelope.fail(envelope.INVALID_TENANT_TOKEN, INVALID_TOKEN_MSG, 400)
    return None


# -- IM's throttling of message sends ---------------------------------------------------------

SEND_PATH = re.compile(r"/open-apis/im/v1/messages(/[^/]+/reply)?")
THROTTLES = {
    "throttle_chat": (envelope.IM_CHAT_THROTTLED, "This operation triggers the frequency limit.", "5"),
    "throttle_tenant": (envelope.IM_SERVICE_THROTTLED, "create message service trigger rate limit", "50"),
}


def _throttle(st: SandboxState):
    """Message sends (POST create, POST reply) refused as too frequent for the chat or for the
    whole service: HTTP 400 with IM's codes, and the reset hint in the gateway's headers."""
    if request.method != "POST" or not SEND_PATH.fullmatch(request.path):
        return None
    with st.lock:
        fired = next((name for name in THROTTLES if st.faults.take(name, st.random.random)), None)
        reset = st.faults.throttle_reset_seconds
    if fired is None:
        return None
    code, msg, limit = THROTTLES[fired]
    headers = {} if reset is None else {"x-ogw-ratelimit-limit": limit, "x-ogw-ratelimit-reset": f"{reset:g}"}
    return envelope.fail(code, msg, 400, headers)
