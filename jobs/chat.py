"""Progress cards: build each tracked card from its job's current state and patch it in place
when it changed, until the work is over (then one final patch with the result)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from bot.cards import eta_text, progress_card
from bot.im import patch_card
from bot.models import ChatCard
from bot.queue import QueueName
from bot.services import Services, current
from jobs.timing import instrumented

log = logging.getLogger(__name__)
WAITING_KEY = "fb:chat:refresh-waiting"


@dataclass(frozen=True)
class Card:
    content: dict[str, Any]
    final: bool

    @property
    def digest(self) -> str:
        return hashlib.sha256(
            json.dumps(self.content, sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()


def card_for(services: Services, kind: str, ref_id: int) -> Card:
    if kind == "export":
        return _export_card(services, ref_id)
    if kind == "coze_sync":
        return _coze_card(services, ref_id)
    raise ValueError(f"unknown card kind {kind!r}")


def _export_card(services: Services, run_id: int) -> Card:
    from bot.export import runner
    from bot.overview import export_lines

    state = runner.progress(services.engine, run_id)
    done = state["status"] in ("done", "cancelled")
    failed = state["status"] == "cancelled" or bool(done and state["problems"])
    lines = export_lines(state)
    if not done:
        lines.append(eta_text(state["eta_seconds"]))
    buttons = None
    if any(p["state"] == "failed" for p in state["problems"]):
        buttons = [
            {"text": "重试失败的窗口", "type": "primary", "value": {"action": "export_retry", "run": run_id}}
        ]
    title = f"合同协同记录导出 #{run_id}"
    return Card(
        progress_card(title, state["fraction"] * 100, lines, done=done, failed=failed, buttons=buttons), done
    )


def _coze_card(services: Services, sync_id: int) -> Card:
    from bot.coze import manual

    state = manual.progress(services, sync_id)
    total = state["total_records"]
    finished = state["records_synced"] + state["records_failed"]
    done = state["status"] in ("done", "failed")
    percent = 100.0 if done else (100.0 * finished / total if total else 0.0)
    if state["status"] == "failed":
        lines = [f"同步失败：{state['error']}"]
    elif done:
        lines = [
            f"同步完成，成功同步 {state['records_synced']} 条记录"
            + (f"，{state['records_failed']} 条进入死信" if state["records_failed"] else "")
        ]
    else:
        lines = [f"已同步 {state['records_synced']} / {total} 条"]
    return Card(
        progress_card(
            f"Coze 手动同步 #{sync_id}",
            percent,
            lines,
            done=done,
            failed=state["status"] == "failed" or bool(state["records_failed"]),
        ),
        done,
    )


def refresh_soon(services: Services) -> None:
    if services.redis.set(WAITING_KEY, "1", nx=True, ex=30):
        services.queues[QueueName.DEFAULT].enqueue(refresh_chat_cards, job_timeout=120, result_ttl=60)


@instrumented("refresh_chat_cards")
def refresh_chat_cards() -> int:
    """Cron (every CHAT_CARD_REFRESH_SECONDS): patch every live card whose content changed."""
    services = current()
    services.redis.delete(WAITING_KEY)
    with services.sessions() as session:
        cards = list(session.scalars(select(ChatCard).where(ChatCard.state == "live")))
    patched = 0
    for row in cards:
        card = card_for(services, row.kind, row.ref_id)
        if card.digest != row.content_hash:
            patch_card(services.feishu, row.message_id, card.content)
            patched += 1
        with services.sessions() as session, session.begin():
            stored = session.get(ChatCard, row.id)
            stored.content_hash, stored.updated_at = card.digest, datetime.now(UTC)
            if card.final:
                stored.state = "final"
    return patched
