"""Progress cards are pure functions of their job's state."""

from __future__ import annotations

from bot.chat.cards import eta_text, notice_card, progress_card


def test_progress_card_shows_state_percent_and_buttons():
    card = progress_card(
        "导出 #1", 42.4, ["窗口：3 / 7"], buttons=[{"text": "重试", "value": {"action": "x"}}]
    )
    assert card["config"]["update_multi"] is True and card["header"]["template"] == "blue"
    first = card["elements"][0]["text"]["content"]
    assert first.startswith("**进行中**") and first.endswith("42%") and first.count("█") == 8
    assert card["elements"][2]["actions"][0]["value"] == {"action": "x"}
    assert progress_card("t", 100, [], done=True)["header"]["template"] == "green"
    assert progress_card("t", 100, [], done=True, failed=True)["header"]["template"] == "red"
    assert "**失败**" in progress_card("t", 10, [], failed=True)["elements"][0]["text"]["content"]


def test_eta_and_notice():
    assert eta_text(None) == "预计剩余：计算中"
    assert eta_text(42) == "预计剩余：42 秒"
    assert eta_text(125) == "预计剩余：2 分 5 秒"
    assert eta_text(7260) == "预计剩余：2 小时 1 分"
    card = notice_card("缓存同步", "已开始", buttons=[{"text": "强制", "value": {"action": "force_sync"}}])
    assert card["elements"][1]["actions"][0]["text"]["content"] == "强制"
    assert "action" not in [e["tag"] for e in notice_card("t", "x")["elements"]]
