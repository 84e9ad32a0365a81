"""Who may command the bot, which cached sources they may read where, and the audit of every
command and button click.

Default-deny: only CHAT_ADMINS (anywhere) and anyone in CHAT_ALLOWED_CHATS may command the bot.
A command that shows a cached source also needs that source's visibility to admit the sender in
this chat (bot/caches/visibility.py): otherwise it is refused (`Refused`), naming the source and
who may read it. Each command is recorded once per message (`chat_commands`), so a re-delivered
message runs once, and a run that failed part-way is retried.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from bot.caches.visibility import Visibility, may_read, stored
from bot.chat.texts import not_visible_text
from bot.models import CacheSource, ChatCommand
from bot.services import Services

REFUSAL = "抱歉，你没有使用此机器人的权限。请联系管理员把你的 open_id（{open_id}）加入 CHAT_ADMINS。"
REFUSED_DETAIL = "not in CHAT_ADMINS / CHAT_ALLOWED_CHATS"


@dataclass(frozen=True)
class Origin:
    """Where a command comes from: its chat (`chat_type` is `p2p` for a private chat with the
    bot, `group` otherwise) and who sent it."""

    chat_id: str
    chat_type: str
    open_id: str


class Refused(Exception):
    """The sender may not have this here: `reply` is said in the chat, `detail` audited."""

    def __init__(self, reply: str, detail: str) -> None:
        super().__init__(detail)
        self.reply, self.detail = reply, detail


def allowed(services: Services, open_id: str, chat_id: str) -> bool:
    settings = services.settings
    return open_id in settings.chat_admins or chat_id in settings.chat_allowed_chats


def refusal(services: Services, source: CacheSource, origin: Origin,
            shown: Visibility | None = None) -> str | None:
    """Why `origin` may not read `source` (None: it may)."""
    settings = services.settings
    shown = shown or stored(source.visibility, source.visible_chats)
    return may_read(shown, source.as_user,
                    chat_id=origin.chat_id, chat_type=origin.chat_type, open_id=origin.open_id,
                    admins=settings.chat_admins, allowed_chats=settings.chat_allowed_chats)


def require_readable(services: Services, source: CacheSource, origin: Origin) -> None:
    """Refused, naming the source, who may read it and what an admin runs, unless readable here."""
    shown = stored(source.visibility, source.visible_chats)
    reason = refusal(services, source, origin, shown)
    if reason is not None:
        raise Refused(not_visible_text(source.name, shown, origin.chat_id), f"source {source.name}: {reason}")


def readable(services: Services, sources: Iterable[CacheSource], origin: Origin) -> list[CacheSource]:
    """The sources `origin` may read here: what a listing in this chat shows."""
    return [s for s in sources if refusal(services, s, origin) is None]


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
