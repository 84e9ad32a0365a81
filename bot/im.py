"""Sending chat messages as the bot (im/v1), through the Feishu gateway."""

from __future__ import annotations

import json

from bot.feishu import Feishu


def reply_text(feishu: Feishu, message_id: str, text: str) -> str:
    """Reply in the message's thread; the uuid makes a retried job's reply a no-op at Feishu."""
    from lark_oapi.api.im.v1 import ReplyMessageRequest, ReplyMessageRequestBody

    def build() -> ReplyMessageRequest:
        body = (ReplyMessageRequestBody.builder().msg_type("text")
                .content(json.dumps({"text": text}, ensure_ascii=False))
                .uuid(f"reply-{message_id}"[:50]).build())
        return ReplyMessageRequest.builder().message_id(message_id).request_body(body).build()

    response = feishu.call("im.v1.message.reply",
                           lambda client, option: client.im.v1.message.reply(build(), option))
    return response.data.message_id


def send_text(feishu: Feishu, chat_id: str, text: str, *, uuid: str) -> str:
    """Post a text message to a chat; `uuid` de-duplicates retries (Feishu keeps it an hour)."""
    from lark_oapi.api.im.v1 import CreateMessageRequest, CreateMessageRequestBody

    def build() -> CreateMessageRequest:
        body = (CreateMessageRequestBody.builder().receive_id(chat_id).msg_type("text")
                .content(json.dumps({"text": text}, ensure_ascii=False)).uuid(uuid[:50]).build())
        return CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build()

    response = feishu.call("im.v1.message.create",
                           lambda client, option: client.im.v1.message.create(build(), option))
    return response.data.message_id


def reply_card(feishu: Feishu, message_id: str, card: dict) -> str:
    """Answer a command with an interactive card (to be patched as its job progresses)."""
    from lark_oapi.api.im.v1 import ReplyMessageRequest, ReplyMessageRequestBody

    def build() -> ReplyMessageRequest:
        body = (ReplyMessageRequestBody.builder().msg_type("interactive")
                .content(json.dumps(card, ensure_ascii=False))
                .uuid(f"card-{message_id}"[:50]).build())
        return ReplyMessageRequest.builder().message_id(message_id).request_body(body).build()

    response = feishu.call("im.v1.message.reply",
                           lambda client, option: client.im.v1.message.reply(build(), option))
    return response.data.message_id


def patch_card(feishu: Feishu, message_id: str, card: dict) -> None:
    """Replace a card's content in place (the card must have `update_multi`)."""
    from lark_oapi.api.im.v1 import PatchMessageRequest, PatchMessageRequestBody

    def build() -> PatchMessageRequest:
        body = PatchMessageRequestBody.builder().content(json.dumps(card, ensure_ascii=False)).build()
        return PatchMessageRequest.builder().message_id(message_id).request_body(body).build()

    feishu.call("im.v1.message.patch", lambda client, option: client.im.v1.message.patch(build(), option))
