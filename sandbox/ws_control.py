"""`/sandbox/long-connection`: the subscription mode and the long-connection knobs (not part of
Feishu's API). GET shows the mode, open and recently closed connections, knob values and
handshake refusals; POST changes any of them (sandbox/ws_knobs.py lists and validates them)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from sandbox.guard import state
from sandbox.ws_knobs import parse_knobs

bp = Blueprint("sandbox_long_connection", __name__, url_prefix="/sandbox")


@bp.get("/long-connection")
def show():
    st = state()
    return jsonify(event_mode=st.event_mode, **st.long_connection.snapshot())


@bp.post("/long-connection")
def configure():
    """`{"event_mode"?, "ping_interval"?, "reconnect_interval"?, "reconnect_nonce"?,
    "reconnect_count"?, "answer_pings"?, "connection"?, "ack_delay"?, "drop"?}`; answers like
    GET, plus `dropped` (the connection ids cut)."""
    st = state()
    try:
        changes = parse_knobs(request.get_json(force=True, silent=True))
        dropped = st.long_connection.apply(changes)
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    except LookupError as exc:
        return jsonify(error=str(exc.args[0])), 404
    if changes.event_mode is not None:
        st.event_mode = changes.event_mode
    return jsonify(event_mode=st.event_mode, dropped=dropped, **st.long_connection.snapshot())
