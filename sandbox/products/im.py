"""Messenger (im/v1): the bot sends and replies; every sent message is kept for tests."""

from __future__ import annotations

import json

from flask import Blueprint, request

from sandbox import envelope
from sandbox.guard import open_api, state

bp = Blueprint("sandbox_im", __name__)

MSG_TYPES = {"text", "post", "image", "file", "audio", "media", "sticker", "interactive",
             "share_chat", "share_user", "system"}


def _validate(body: dict) -> str | None:
    msg_type, content = body.get("msg_type"), body.get("content")
    if msg_type not in MSG_TYPES:
        return f"msg_type must be one of {sorted(MSG_TYPES)}"
    if not isinstance(content, str):
        return "content must be a JSON-encoded string"
    try:
        doc = json.loads(content)
    except ValueError:
        return "content is not valid JSON"
    if msg_type == "text" and (not isinstance(doc, dict) or "text" not in doc):
        return "text content must be {\"text\": ...}"
    uuid = body.get("uuid")
    if uuid is not None and (not isinstance(uuid, str) or len(uuid) > 50):
        return "uuid must be a string of at most 50 characters"
    return None


@bp.post("/open-apis/im/v1/messages")
@open_api
def create_message():
    st = state()
    body = request.get_json(force=True, silent=True) or {}
    id_type = request.args.get("receive_id_type")
    if id_type not in {"open_id", "user_id", "union_id", "email", "chat_id"}:
        return envelope.fail(envelope.IM_INVALID_PARAM, "invalid receive_id_type")
    problem = _validate(body)
    if problem or not isinstance(body.get("receive_id"), str):
        return envelope.fail(envelope.IM_INVALID_PARAM, problem or "receive_id is required")
    chat_id = body["receive_id"] if id_type == "chat_id" else f"oc_p2p_{body['receive_id']}"
    message, _ = st.add_bot_message(chat_id=chat_id, msg_type=body["msg_type"],
                                    content=body["content"], uuid=body.get("uuid"))
    return envelope.ok(message.to_api(st.config.app_id))


@bp.post("/open-apis/im/v1/messages/<message_id>/reply")
@open_api
def reply_message(message_id: str):
    st = state()
    parent = st.messages.get(message_id)
    if parent is None:
        return envelope.fail(envelope.IM_INVALID_PARAM, f"message {message_id} not found")
    body = request.get_json(force=True, silent=True) or {}
    problem = _validate(body)
    if problem:
        return envelope.fail(envelope.IM_INVALID_PARAM, problem)
    message, _ = st.add_bot_message(chat_id=parent.chat_id, msg_type=body["msg_type"],
                                    content=body["content"], uuid=body.get("uuid"), parent=parent)
    return envelope.ok(message.to_api(st.config.app_id))
