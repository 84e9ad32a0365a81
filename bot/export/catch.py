"""Recognising "export complete" messages from the contract bot, found by polling its chat.

They never arrive as events: a bot receives only its own chats' messages (1:1 chats and
@-mentions in its groups), and the user's chat with the contract bot is not one of the app's.
So the chat is listed as EXPORT_USER, with that user's token, every EXPORT_POLL_SECONDS while a
run waits for files (bot/export/steps.py:poll_messages).

The real message format is undocumented, so the recogniser is configuration: the chat
(EXPORT_CHAT_ID), optionally the sender (EXPORT_SENDER_ID), and a pattern the attached file's
name must match (EXPORT_FILE_PATTERN). Only `file` messages qualify: the file itself is what we
need, and its rows — not any count in the message text — decide what it holds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from bot.config import Settings
from bot.filenames import valid_message_id
from bot.models import ExportFile, utcnow


@dataclass(frozen=True)
class CompletionFile:
    message_id: str
    chat_id: str
    file_key: str
    file_name: str
    message_at: datetime


def _ids(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {v for v in value.values() if isinstance(v, str) and v}
    return {value} if isinstance(value, str) and value else set()


def recognise(
    *,
    message_id: str,
    chat_id: str,
    msg_type: str,
    content: str | None,
    create_time: str | None,
    sender_ids: set[str],
    settings: Settings,
) -> CompletionFile | None:
    if msg_type != "file" or not settings.export_chat_id or chat_id != settings.export_chat_id:
        return None
    if not valid_message_id(message_id):  # it travels into API paths and the browser's URL
        return None
    if settings.export_sender_id and settings.export_sender_id not in sender_ids:
        return None
    try:
        doc = json.loads(content or "")
    except ValueError:
        return None
    if not isinstance(doc, dict) or not doc.get("file_key"):
        return None
    name = str(doc.get("file_name") or "")
    if not re.search(settings.export_file_pattern, name):
        return None
    millis = int(create_time) if create_time and str(create_time).isdigit() else None
    at = datetime.fromtimestamp(millis / 1000, UTC) if millis else utcnow()
    return CompletionFile(message_id, chat_id, str(doc["file_key"]), name, at)


def from_listing(item: dict[str, Any], settings: Settings) -> CompletionFile | None:
    """An item of `im/v1/messages`, listed with EXPORT_USER's token (the only way these arrive)."""
    return recognise(
        message_id=item.get("message_id", ""),
        chat_id=item.get("chat_id", ""),
        msg_type=item.get("msg_type", ""),
        content=(item.get("body") or {}).get("content"),
        create_time=item.get("create_time"),
        sender_ids=_ids((item.get("sender") or {}).get("id")),
        settings=settings,
    )


def record(engine: Engine, found: CompletionFile, via: str) -> int | None:
    """Store the message's file once; the new row's id, or None when the message was already seen."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    now = utcnow()
    stmt = (
        dialect.insert(ExportFile)
        .values(
            message_id=found.message_id,
            chat_id=found.chat_id,
            file_key=found.file_key,
            file_name=found.file_name,
            message_at=found.message_at,
            seen_via=via,
            state="received",
            attempts=0,
            received_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["message_id"])
        .returning(ExportFile.id)
    )
    with engine.begin() as conn:
        return conn.execute(stmt).scalar()
