"""Builders for the event bodies Feishu sends (the `event` part of a schema 2.0 envelope)."""

from __future__ import annotations

from typing import Any

from sandbox.state import Message


def message_receive(message: Message, *, chat_type: str, tenant_key: str) -> dict[str, Any]:
    """`im.message.receive_v1` for a user's message."""
    return {
        "sender": {
            "sender_id": {
                "open_id": message.sender_id,
                "union_id": message.sender_id.replace("ou_", "on_", 1),
                "user_id": message.sender_id.removeprefix("ou_"),
            },
            "sender_type": "user",
            "tenant_key": tenant_key,
        },
        "message": {
            "message_id": message.message_id,
            "root_id": message.root_id,
            "parent_id": message.parent_id,
            "create_time": str(message.create_time),
            "update_time": str(message.create_time),
            "chat_id": message.chat_id,
            "thread_id": "",
            "chat_type": chat_type,
            "message_type": message.msg_type,
            "content": message.content,
            "mentions": [],
            "user_agent": "Feishu-Sandbox",
        },
    }


def bitable_changed(file_token: str, table_id: str, revision: int, operator_open_id: str,
                    actions: list[dict[str, Any]], update_time: int) -> dict[str, Any]:
    """The body of `drive.file.bitable_record_changed_v1` (actions `{record_id, action}`, action
    record_added | record_edited | record_deleted) and of `drive.file.bitable_field_changed_v1`
    (`{field_id, action}`, field_added | …): the same shape. Values are left out: the bridge
    fetches current state and does not read them."""
    return {
        "file_type": "bitable",
        "file_token": file_token,
        "table_id": table_id,
        "revision": revision,
        "operator_id": {"open_id": operator_open_id, "union_id": "", "user_id": ""},
        "action_list": actions,
        "subscriber_id_list": [],
        "update_time": update_time,
    }


def card_action(*, operator_open_id: str, value: dict[str, Any], message_id: str, chat_id: str,
                tenant_key: str, app_id: str) -> dict[str, Any]:
    """`card.action.trigger` (card callback, schema 2.0) for a button click on a bot's card."""
    return {
        "operator": {
            "tenant_key": tenant_key,
            "user_id": operator_open_id.removeprefix("ou_"),
            "open_id": operator_open_id,
            "union_id": operator_open_id.replace("ou_", "on_", 1),
        },
        "token": f"c-sandbox-{message_id}",
        "action": {"value": value, "tag": "button"},
        "host": "im_message",
        "context": {"open_message_id": message_id, "open_chat_id": chat_id},
    }


def legacy_card_action(*, operator_open_id: str, value: Any, message_id: str, chat_id: str,
                       tenant_key: str) -> dict[str, Any]:
    """A button click as the legacy "message card request URL" (消息卡片请求网址) posts it: no
    schema and no header, the clicker and the card at the top level; `token` is the card-update
    credential (`c-…`), not the verification token."""
    return {
        "open_id": operator_open_id,
        "user_id": operator_open_id.removeprefix("ou_"),
        "open_message_id": message_id,
        "open_chat_id": chat_id,
        "tenant_key": tenant_key,
        "token": f"c-sandbox-{message_id}",
        "action": {"value": value, "tag": "button"},
    }
