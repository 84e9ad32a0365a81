"""Interactive cards for long-running chat commands (pure: state in, card JSON out).

Feishu card JSON 1.0 (`config`, `header`, `elements`); the same card is re-sent with message
patch as the job progresses, so it is built entirely from the job's current state
(bot/chat/live.py reads that state and patches the message).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bot.chat.texts import export_lines
from bot.export.progress import Progress


def _bar(percent: float, width: int = 20) -> str:
    filled = round(width * max(0.0, min(100.0, percent)) / 100)
    return "█" * filled + "░" * (width - filled)


def progress_card(
    title: str,
    percent: float,
    lines: list[str],
    *,
    done: bool = False,
    failed: bool = False,
    buttons: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    template = "red" if failed else "green" if done else "blue"
    state = "失败" if failed else "完成" if done else "进行中"
    elements: list[dict[str, Any]] = [
        {"tag": "div", "text": {"tag": "lark_md", "content": f"**{state}** {_bar(percent)} {percent:.0f}%"}},
        {"tag": "div", "text": {"tag": "lark_md", "content": "\n".join(lines)}},
    ]
    if buttons:
        elements.append(_actions(buttons))
    return _card(title, template, elements)


def notice_card(title: str, text: str, *, buttons: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A one-off card: a message with optional buttons (handled by card-action callbacks)."""
    elements: list[dict[str, Any]] = [{"tag": "div", "text": {"tag": "lark_md", "content": text}}]
    if buttons:
        elements.append(_actions(buttons))
    return _card(title, "blue", elements)


def _card(title: str, template: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    # update_multi: the card is shared by everyone in the chat and can be patched for all
    return {
        "config": {"wide_screen_mode": True, "update_multi": True},
        "header": {"title": {"tag": "plain_text", "content": title}, "template": template},
        "elements": elements,
    }


def _actions(buttons: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "tag": "action",
        "actions": [
            {
                "tag": "button",
                "text": {"tag": "plain_text", "content": b["text"]},
                "type": b.get("type", "default"),
                "value": b["value"],
            }
            for b in buttons
        ],
    }


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "预计剩余：计算中"
    seconds = int(seconds)
    if seconds < 60:
        return f"预计剩余：{seconds} 秒"
    if seconds < 3600:
        return f"预计剩余：{seconds // 60} 分 {seconds % 60} 秒"
    return f"预计剩余：{seconds // 3600} 小时 {seconds % 3600 // 60} 分"


@dataclass(frozen=True)
class Card:
    content: dict[str, Any]
    final: bool  # the work is over: this is the card's last version

    @property
    def digest(self) -> str:
        return hashlib.sha256(
            json.dumps(self.content, sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()


def export_card(progress: Progress) -> Card:
    """An export run's card: percent bar, counts, ETA; a retry button once windows failed."""
    done = progress.finished
    failed = progress.status == "cancelled" or bool(done and progress.problems)
    lines = export_lines(progress)
    if not done:
        lines.append(eta_text(progress.eta_seconds))
    buttons = None
    if progress.failed_windows:
        retry = {"action": "export_retry", "run": progress.run}
        buttons = [{"text": "重试失败的窗口", "type": "primary", "value": retry}]
    title = f"合同协同记录导出 #{progress.run}"
    content = progress_card(title, progress.fraction * 100, lines, done=done, failed=failed, buttons=buttons)
    return Card(content, done)


def coze_sync_card(sync_id: int, state: dict[str, Any], message: str) -> Card:
    """A Coze manual sync's card, from `bot.coze.manual.progress` and its one-line message."""
    total = state["total_records"]
    finished = state["records_synced"] + state["records_failed"]
    done = state["status"] in ("done", "failed")
    percent = 100.0 if done else (100.0 * finished / total if total else 0.0)
    failed = state["status"] == "failed" or bool(state["records_failed"])
    content = progress_card(f"Coze 手动同步 #{sync_id}", percent, [message], done=done, failed=failed)
    return Card(content, done)


def pipeline_card(status: Any) -> Card:
    """A pipeline run's card, from `bot.pipelines.runs.status`: days fetched, rows written, then
    the verified result ("成功账户：6/7 …") or the error."""
    from bot.pipelines.summary import result_lines

    done = status.state in ("succeeded", "failed")
    failed = status.state == "failed" or bool(done and status.summary and not status.summary.get("ok"))
    percent = 100.0 if done else 90.0 * status.days_fetched / max(1, status.days_total)
    span = f"{status.date_from}" + ("" if status.date_from == status.date_to else f" .. {status.date_to}")
    lines = [f"日期：{span}", f"已获取：{status.days_fetched}/{status.days_total} 天，{status.fetched} 行"]
    if status.state == "succeeded" and status.summary:
        lines += result_lines(status.summary)
    elif status.state == "failed":
        lines.append(f"失败：{status.error}")
    elif status.error:
        lines.append(f"将重试：{status.error}")
    if done:
        lines.append(f"写入：新增 {status.created}，更新 {status.updated}，删除 {status.deleted}"
                     f"（{status.calls} 次飞书调用）")
    content = progress_card(f"管道 {status.pipeline} #{status.id}", percent, lines, done=done, failed=failed)
    return Card(content, done)
