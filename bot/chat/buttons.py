"""Buttons on the bot's cards (`card.action.trigger`): retry an export's failed windows, force a
cache sync — with the same allowlist and audit as typed commands. The webhook has already
answered Feishu with a toast; the work happens here, in a worker."""

from __future__ import annotations

import logging
from typing import Any

from bot.caches import store
from bot.caches.schedule import enqueue_cache_sync
from bot.chat import live
from bot.chat.access import REFUSAL, REFUSED_DETAIL, Origin, allowed, readable, record_once, set_outcome
from bot.chat.cards import notice_card
from bot.chat.schedule import refresh_soon
from bot.export import runner
from bot.export.schedule import schedule_plan
from bot.feishu import FeishuAPIError
from bot.im import patch_card, send_text
from bot.services import Services

log = logging.getLogger(__name__)


def on_click(services: Services, event_doc: dict[str, Any]) -> str:
    header, event = event_doc.get("header") or {}, event_doc.get("event") or {}
    operator = (event.get("operator") or {}).get("open_id", "")
    value = (event.get("action") or {}).get("value") or {}
    context = event.get("context") or {}
    chat_id, card_id = context.get("open_chat_id", ""), context.get("open_message_id", "")
    action = value.get("action") if isinstance(value, dict) else None
    audit_id = f"card-{header.get('event_id', '')}"
    if not record_once(services, audit_id, chat_id, operator, f"[button] {action} on {card_id}"):
        return "ignored: click already handled"
    if not allowed(services, operator, chat_id):
        send_text(services.feishu, chat_id, REFUSAL.format(open_id=operator), uuid=f"refuse-{audit_id}")
        set_outcome(services, audit_id, f"button {action}", "refused", REFUSED_DETAIL)
        return "refused"
    if action == "export_retry":
        detail = export_retry(services, int(value.get("run", 0)), card_id)
    elif action == "force_sync":
        # A click carries no chat type: judged as a group's (fails closed; a forwarded card
        # must not sync, with its owner's token, what the new chat may not read).
        detail = force_sync(services, [str(s) for s in value.get("sources", [])],
                            Origin(chat_id, "", operator), audit_id, card_id)
    else:
        set_outcome(services, audit_id, "button", "usage", f"unknown action {action!r}")
        return f"ignored: unknown action {action!r}"
    set_outcome(services, audit_id, f"button {action}", "ok", detail)
    return f"button {action}: ok"


def export_retry(services: Services, run_id: int, card_id: str) -> str:
    """重试失败的窗口: the failed windows go again, and the card follows the run again."""
    failed = runner.retry_failed(services.engine, run_id)
    live.follow_again(services, card_id)
    schedule_plan(services, run_id)
    refresh_soon(services)
    return f"run {run_id}: windows {failed} re-planned"


def force_sync(services: Services, sources: list[str], origin: Origin, audit_id: str,
               card_id: str = "") -> str:
    """强制全量同步: the named sources still known and readable in this chat are synced in full,
    and the card loses its button (the click is done; a second one would sync again)."""
    known = {s.name for s in readable(services, store.list_sources(services.engine), origin)}
    chosen = [s for s in sources if s in known]
    for name in chosen:
        enqueue_cache_sync(services, name, force=True)
    started = f"已开始强制全量同步：{', '.join(chosen) or '（无）'}"
    send_text(services.feishu, origin.chat_id, started, uuid=f"sync-{audit_id}")
    if card_id:
        try:
            card = notice_card("缓存同步", f"{started}。稍后发送 /status 查看结果。")
            patch_card(services.feishu, card_id, card)
        except FeishuAPIError as exc:  # an old or foreign card: the sync has started regardless
            log.info("force-sync card not updated", extra={"card": card_id, "error": str(exc)})
    return ", ".join(chosen)
