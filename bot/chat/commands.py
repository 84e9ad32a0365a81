"""A text message to the bot, end to end: parse it, check who sent it, audit it, run it.

Runs in a worker (the webhook only records the event). Replies are Chinese; what each command
does is in bot/chat/actions.py.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.chat.access import REFUSAL, REFUSED_DETAIL, Origin, Refused, allowed, record_once, set_outcome
from bot.chat.actions import ACTIONS
from bot.chat.parser import Command, UsageError, parse, text_of_message
from bot.im import reply_text
from bot.services import Services

log = logging.getLogger(__name__)

FAILURE = "命令 /{label} 执行出错（{error}），已记录在日志中；系统会自动重试，若仍无结果请联系管理员。"


def on_text(services: Services, event: dict[str, Any]) -> str:
    message = event.get("message") or {}
    sender = ((event.get("sender") or {}).get("sender_id") or {}).get("open_id", "")
    text = text_of_message(message.get("content"))
    message_id, chat_id = message.get("message_id", ""), message.get("chat_id", "")
    origin = Origin(chat_id, str(message.get("chat_type") or ""), sender)  # no type: treated as a group
    try:
        command = parse(text)
    except UsageError as exc:
        command, usage = None, str(exc)
    else:
        usage = None
        if command is None:
            return "ignored: not a command"
    if not record_once(services, message_id, chat_id, sender, text):
        return "ignored: command already handled"
    public = command is not None and command.name == "ping"  # a liveness check reveals nothing
    if not public and not allowed(services, sender, chat_id):
        reply_text(services.feishu, message_id, REFUSAL.format(open_id=sender))
        set_outcome(services, message_id, None, "refused", REFUSED_DETAIL)
        return "refused"
    if usage is not None:
        reply_text(services.feishu, message_id, usage)
        set_outcome(services, message_id, None, "usage", usage)
        return "usage error replied"
    assert command is not None
    try:
        detail = execute(services, command, message_id, origin)
    except Refused as exc:  # e.g. a cached source this chat may not read
        reply_text(services.feishu, message_id, exc.reply)
        set_outcome(services, message_id, command.label, "refused", exc.detail)
        return "refused"
    except UsageError as exc:
        reply_text(services.feishu, message_id, str(exc))
        set_outcome(services, message_id, command.label, "usage", str(exc))
        return "usage error replied"
    except Exception as exc:
        log.exception("chat command failed", extra={"command": command.label})
        set_outcome(services, message_id, command.label, "error", f"{type(exc).__name__}: {exc}"[:500])
        tell_failure(services, message_id, command.label, exc)
        raise  # the event job retries; the reply uuid keeps Feishu from showing it twice
    set_outcome(services, message_id, command.label, "ok", detail)
    return f"{command.label}: ok"


def tell_failure(services: Services, message_id: str, label: str, exc: Exception) -> None:
    """A command that breaks still answers: once per message (its own uuid, so a retry that
    succeeds can still reply), naming the error type only — details stay in the logs."""
    text = FAILURE.format(label=label, error=type(exc).__name__)
    try:
        reply_text(services.feishu, message_id, text, uuid=f"error-{message_id}")
    except Exception:
        log.warning("could not tell the user a command failed", exc_info=True)


def execute(services: Services, command: Command, message_id: str, origin: Origin) -> str | None:
    """Run a parsed, allowed command; the detail for its audit row."""
    action = ACTIONS[(command.name, command.action)]
    return action(services, command, message_id, origin)
