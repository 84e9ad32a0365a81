"""Who may command the bot, and the audit of every command and button click.

Default-deny: only CHAT_ADMINS (anywhere) and anyone in CHAT_ALLOWED_CHATS. Each command is
recorded once per message (`chat_commands`), so a re-delivered message runs once, and a run
that failed part-way is retried.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from bot.models import ChatCommand
from bot.services import Services

REFUSAL = "抱歉，你没有使用此机器人的权限。请联系管理员把你的 open_id（{open_id}）加入 CHAT_ADMINS。"
REFUSED_DETAIL = "not in CHAT_ADMINS / CHAT_ALLOWED_CHATS"


def allowed(services: Services, open_id: str, chat_id: str) -> bool:
    settings = services.settings
    return open_id in settings.chat_admins or chat_id in settings.chat_allowed_chats


def record_once(services: Services, message_id: str, chat_id: str, open_id: str, text: str) -> bool:
    """Record the command (unique per message); False if it was recorded and finished before."""
    with services.sessions() as session, session.begin():
        row = session.scalar(select(ChatCommand).where(ChatCommand.message_id == message_id))
        if row is not None:
            return row.outcome in ("received", "error")  # a retried job that failed part-way goes on
        session.add(
            ChatCommand(
                message_id=message_id,
                chat_id=chat_id,
                open_id=open_id,
                text=text[:1000],
                outcome="received",
                created_at=datetime.now(UTC),
            )
        )
    return True


def set_outcome(
    services: Services, message_id: str, command: str | None, outcome: str, detail: str | None
) -> None:
    with services.sessions() as session, session.begin():
        row = session.scalar(select(ChatCommand).where(ChatCommand.message_id == message_id))
        if row is not None:
            row.command, row.outcome, row.detail = command, outcome, (detail or "")[:1000] or None
