"""Interactive cards for long-running chat commands (pure: state in, card JSON out).

Feishu card JSON 1.0 (`config`, `header`, `elements`); the same card is re-sent with message
patch as the job progresses, so it is built entirely from the job's current state.
"""

from __future__ import annotations

from typing import Any


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
