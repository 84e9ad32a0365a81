"""`im.message.receive_v1`: chat messages sent to the bot."""

from __future__ import annotations

import json
import logging
from typing import Any

from bot.services import Services
from handlers.commands import parse, text_of_message

log = logging.getLogger(__name__)


def on_message_receive(services: Services, event_doc: dict[str, Any]) -> str:
    """Answer `/ping` with `pong`; the full command set arrives with the chat-commands issue."""
    message = (event_doc.get("event") or {}).get("message") or {}
    if message.get("message_type") != "text":
        return "ignored: not a text message"
    command = parse(text_of_message(message.get("content")))
    if command is None:
        return "ignored: not a command"
    if command.name == "ping":
        reply_text(services, message["message_id"], "pong")
        return "replied pong"
    return f"ignored: unknown command /{command.name}"


def reply_text(services: Services, message_id: str, text: str) -> str:
    """Reply in the message's thread through the SDK; returns the new message id."""
    from lark_oapi.api.im.v1 import ReplyMessageRequest, ReplyMessageRequestBody

    from bot.feishu import raise_for_response

    request = (
        ReplyMessageRequest.builder()
        .message_id(message_id)
        .request_body(
            ReplyMessageRequestBody.builder()
            .msg_type("text")
            .content(json.dumps({"text": text}, ensure_ascii=False))
            .uuid(f"reply-{message_id}"[:50])
            .build()
        )
        .build()
    )
    response = services.feishu.im.v1.message.reply(request)
    raise_for_response("im.v1.message.reply", response)
    return response.data.message_id
