"""Messenger (im/v1): the bot sends and replies; every sent message is kept for tests."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

from flask import Blueprint, Response, request

from sandbox import envelope
from sandbox.contract import CONTRACT_CHAT_ID
from sandbox.guard import open_api, state
from sandbox.state import Message, SandboxState

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
    message, created = st.add_bot_message(chat_id=chat_id, msg_type=body["msg_type"],
                                          content=body["content"], uuid=body.get("uuid"))
    answer = envelope.ok(message.to_api(st.config.app_id))
    if created:
        _maybe_recall(st, message)
    return answer


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
    message, created = st.add_bot_message(chat_id=parent.chat_id, msg_type=body["msg_type"],
                                          content=body["content"], uuid=body.get("uuid"), parent=parent)
    answer = envelope.ok(message.to_api(st.config.app_id))
    if created:
        _maybe_recall(st, message)
    return answer


FILE_TYPES = {"opus", "mp4", "pdf", "doc", "xls", "ppt", "stream"}
MAX_UPLOAD_BYTES = 30 * 1024 * 1024


@bp.post("/open-apis/im/v1/files")
@open_api
def upload_file():
    """Upload a file the bot will send (multipart: file_type, file_name, file) → file_key."""
    st = state()
    fields = _multipart(request.headers.get("Content-Type", ""), request.get_data())
    file_type = fields.get("file_type", b"").decode()
    file_name = fields.get("file_name", b"").decode()
    content = fields.get("file")
    if file_type not in FILE_TYPES:
        return envelope.fail(envelope.IM_INVALID_PARAM, f"file_type must be one of {sorted(FILE_TYPES)}")
    if not file_name or content is None:
        return envelope.fail(envelope.IM_INVALID_PARAM, "file_name and file are required")
    if not content or len(content) > MAX_UPLOAD_BYTES:
        return envelope.fail(envelope.IM_INVALID_PARAM, "the file must be 1 byte to 30 MB")
    file_key = st.next_id("file_v3_sandbox_upload_")
    with st.lock:
        st.uploads[file_key] = (file_name, content)
    return envelope.ok({"file_key": file_key})


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """Raw bytes of each multipart/form-data part. (lark-oapi sends the file as a part without a
    filename, which form parsers would decode as text.)"""
    from email.parser import BytesParser
    from email.policy import HTTP

    if not content_type.startswith("multipart/form-data"):
        return {}
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = part.get_payload(decode=True) or b""
    return fields


@bp.patch("/open-apis/im/v1/messages/<message_id>")
@open_api
def patch_message(message_id: str):
    """Update a card the bot sent (message patch), refused as Feishu refuses it: see
    `_patch_refusal`. Every version is kept for `/sandbox/messages/{id}/history`."""
    st = state()
    content = (request.get_json(force=True, silent=True) or {}).get("content")
    now = time.time()
    with st.lock:
        message = st.messages.get(message_id)
        refusal = _patch_refusal(message, content, now)
        if refusal is not None:
            return envelope.fail(*refusal)
        assert message is not None
        message.patched_at = [t for t in message.patched_at if t > now - 1.0] + [now]
        message.versions.append(message.content)
        message.content = content
        message.update_time = int(now * 1000)
    return envelope.ok({})


PATCH_MAX_AGE_MS = 14 * 24 * 3600 * 1000  # "仅支持更新 14 天内发送的消息"
PATCH_QPS = 5  # "单条消息更新频控为 5 QPS"


def _patch_refusal(message: Message | None, content: object, now: float) -> tuple[int, str] | None:
    """Why Feishu would refuse this patch, as (code, msg), or None. The rules are the patch doc's
    (im-v1/message-card/patch.md); the order they are checked in is an assumption."""
    if message is None:
        return envelope.IM_INVALID_PARAM, "message not found"
    if message.msg_type != "interactive" or message.sender_type != "app":
        return envelope.IM_INVALID_PARAM, "only cards sent by this app can be updated"
    if message.recalled:
        return envelope.IM_MESSAGE_RECALLED, "The message is recalled."
    if now * 1000 - message.create_time > PATCH_MAX_AGE_MS:
        return envelope.IM_PATCH_TOO_OLD, "Message can only be modified within 14 days after sending."
    if sum(1 for t in message.patched_at if t > now - 1.0) >= PATCH_QPS:
        return envelope.IM_PATCH_FREQUENCY_LIMIT, "This operation triggers the frequency limit."
    card = _card(content)
    if card is None:
        return envelope.IM_INVALID_PARAM, "content must be a JSON-encoded card"
    if not (_shared(_card(message.content)) and _shared(card)):
        # the doc asks for update_multi before and after; the code for a refusal is assumed
        return envelope.IM_INVALID_PARAM, "only shared cards (config.update_multi: true) can be updated"
    return None


def _card(content: object) -> dict | None:
    try:
        card = json.loads(content) if isinstance(content, str) else None
    except ValueError:
        return None
    return card if isinstance(card, dict) else None


def _shared(card: dict | None) -> bool:
    """A shared card ("共享卡片"): `config.update_multi` is true, so a patch shows for everyone."""
    config = (card or {}).get("config")
    return isinstance(config, dict) and config.get("update_multi") is True


def _maybe_recall(st: SandboxState, message: Message) -> None:
    """The `recall_cards` knob: a user recalls a card right after the app sent it."""
    if message.msg_type != "interactive" or st.faults.recall_cards <= 0:
        return
    with st.lock:
        if st.random.random() < st.faults.recall_cards:
            message.recalled = True


@bp.get("/open-apis/im/v1/messages")
@open_api
def list_messages():
    """A chat's history, oldest first by default, `start_time`/`end_time` in seconds."""
    st = state()
    if request.args.get("container_id_type") != "chat" or not request.args.get("container_id"):
        return envelope.fail(envelope.IM_INVALID_PARAM, "container_id_type=chat and container_id required")
    chat_id = request.args["container_id"]
    if chat_id == CONTRACT_CHAT_ID and not _as_user():
        return envelope.fail(envelope.IM_BOT_NOT_IN_CHAT, "bot is not in the chat (read it as the user)")
    try:
        start = int(request.args.get("start_time", "0")) * 1000
        end = int(request.args.get("end_time", str(2**40))) * 1000
        size = min(50, max(1, int(request.args.get("page_size", "20"))))
        offset = int(request.args.get("page_token") or 0)
    except ValueError:
        return envelope.fail(envelope.IM_INVALID_PARAM, "bad start_time, end_time, page_size or page_token")
    with st.lock:
        found = sorted((m for m in st.messages.values()
                        if m.chat_id == chat_id and start <= m.create_time <= end),
                       key=lambda m: (m.create_time, m.message_id),
                       reverse=request.args.get("sort_type") == "ByCreateTimeDesc")
    page = found[offset:offset + size]
    more = offset + size < len(found)
    return envelope.ok({"items": [m.to_api(st.config.app_id) for m in page], "has_more": more,
                        "page_token": str(offset + size) if more else ""})


@bp.get("/open-apis/im/v1/messages/<message_id>/resources/<file_key>")
@open_api
def message_resource(message_id: str, file_key: str):
    st = state()
    message = st.messages.get(message_id)
    if message is None or request.args.get("type") not in ("file", "image"):
        return envelope.fail(envelope.IM_INVALID_PARAM, "message not found or bad type")
    if json.loads(message.content).get("file_key") != file_key:
        return envelope.fail(envelope.IM_RESOURCE_MISMATCH, "the resource key does not belong to the message")
    if message.chat_id == CONTRACT_CHAT_ID and not _as_user():
        return envelope.fail(envelope.IM_RESOURCE_APP_NOT_IN_CHAT, "App not in chat.")
    export_file = st.contract.files.get(file_key)
    if export_file is None:
        return envelope.fail(envelope.IM_RESOURCE_MISMATCH, "resource not found")
    if export_file.denied:
        return envelope.fail(envelope.IM_RESOURCE_RESTRICTED,
                             "Do not allow downloading of message resources in restricted mode.")
    response = Response(export_file.content, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(export_file.file_name)}"
    return response


def _as_user() -> bool:
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return state().user_token_state(token) == "valid"
