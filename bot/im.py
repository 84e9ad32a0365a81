"""Sending chat messages as the bot (im/v1), through the Feishu gateway."""

from __future__ import annotations

import io
import json
from pathlib import Path

from bot.feishu import Feishu


def _reply(feishu: Feishu, message_id: str, msg_type: str, content: dict, uuid: str) -> str:
    """Reply in the message's thread; the uuid makes a retried job's reply a no-op at Feishu."""
    from lark_oapi.api.im.v1 import ReplyMessageRequest, ReplyMessageRequestBody

    def build() -> ReplyMessageRequest:
        body = (
            ReplyMessageRequestBody.builder()
            .msg_type(msg_type)
            .content(json.dumps(content, ensure_ascii=False))
            .uuid(uuid[:50])
            .build()
        )
        return ReplyMessageRequest.builder().message_id(message_id).request_body(body).build()

    response = feishu.call(
        "im.v1.message.reply", lambda client, option: client.im.v1.message.reply(build(), option)
    )
    return response.data.message_id


def reply_text(feishu: Feishu, message_id: str, text: str, *, uuid: str | None = None) -> str:
    """`uuid` defaults to one per message: a second reply to it needs its own."""
    return _reply(feishu, message_id, "text", {"text": text}, uuid or f"reply-{message_id}")


def send_text(feishu: Feishu, chat_id: str, text: str, *, uuid: str) -> str:
    """Post a text message to a chat; `uuid` de-duplicates retries (Feishu keeps it an hour)."""
    return _send(feishu, chat_id, "text", {"text": text}, uuid)


def send_card(feishu: Feishu, chat_id: str, card: dict, *, uuid: str) -> str:
    """Post an interactive card to a chat (a pipeline's result); `uuid` as for send_text."""
    return _send(feishu, chat_id, "interactive", card, uuid)


def _send(feishu: Feishu, chat_id: str, msg_type: str, content: dict, uuid: str) -> str:
    from lark_oapi.api.im.v1 import CreateMessageRequest, CreateMessageRequestBody

    def build() -> CreateMessageRequest:
        body = (
            CreateMessageRequestBody.builder()
            .receive_id(chat_id)
            .msg_type(msg_type)
            .content(json.dumps(content, ensure_ascii=False))
            .uuid(uuid[:50])
            .build()
        )
        return CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build()

    response = feishu.call(
        "im.v1.message.create", lambda client, option: client.im.v1.message.create(build(), option)
    )
    return response.data.message_id


def reply_card(feishu: Feishu, message_id: str, card: dict) -> str:
    """Answer a command with an interactive card (to be patched as its job progresses)."""
    return _reply(feishu, message_id, "interactive", card, f"card-{message_id}")


def patch_card(feishu: Feishu, message_id: str, card: dict) -> None:
    """Replace a card's content in place (the card must have `update_multi`)."""
    from lark_oapi.api.im.v1 import PatchMessageRequest, PatchMessageRequestBody

    def build() -> PatchMessageRequest:
        body = PatchMessageRequestBody.builder().content(json.dumps(card, ensure_ascii=False)).build()
        return PatchMessageRequest.builder().message_id(message_id).request_body(body).build()

    feishu.call("im.v1.message.patch", lambda client, option: client.im.v1.message.patch(build(), option))


def reply_file(feishu: Feishu, message_id: str, path: Path) -> str:
    """Upload a file (im/v1/files) and reply with it as a file message."""
    from lark_oapi.api.im.v1 import CreateFileRequest, CreateFileRequestBody

    data = path.read_bytes()

    def request() -> CreateFileRequest:
        # a fresh stream per attempt: a retried upload must send the whole file again
        body = (
            CreateFileRequestBody.builder()
            .file_type(_file_type(path))
            .file_name(path.name)
            .file(io.BytesIO(data))
            .build()
        )
        return CreateFileRequest.builder().request_body(body).build()

    file_key = feishu.call(
        "im.v1.file.create", lambda client, option: client.im.v1.file.create(request(), option)
    ).data.file_key

    return _reply(feishu, message_id, "file", {"file_key": file_key}, f"file-{message_id}")


def _file_type(path: Path) -> str:
    """Feishu's upload types: opus, mp4, pdf, doc, xls, ppt, or stream for anything else."""
    suffix = path.suffix.lower().lstrip(".")
    return {"xlsx": "xls", "xls": "xls", "csv": "stream", "pdf": "pdf", "docx": "doc", "doc": "doc"}.get(
        suffix, "stream"
    )
