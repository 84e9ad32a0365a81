"""Progress cards are pure functions of their job's state."""

from __future__ import annotations

from bot.chat.cards import coze_sync_card, eta_text, export_card, notice_card, progress_card
from bot.chat.texts import export_lines
from bot.export.progress import Problem, Progress


def _progress(status: str = "running", problems: tuple[Problem, ...] = (), fraction: float = 0.5) -> Progress:
    return Progress(
        run=7, status=status, pause_reason=None, range=("2022-01-01 00:00:00", "2022-04-01 00:00:00"),
        cursor="2022-02-15 00:00:00", calls=12, count_calls=30, records=5400,
        windows={"verified": 6, "awaiting_file": 2, **({"failed": 1} if problems else {})},
        windows_done=6 + len(problems), fraction=fraction, eta_seconds=125, elapsed_seconds=125,
        problems=problems,
    )


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


def test_export_card_follows_the_run_and_offers_a_retry_once_windows_failed():
    running = export_card(_progress())
    assert not running.final and running.content["header"]["template"] == "blue"
    body = running.content["elements"][1]["text"]["content"]
    assert "已导出 5400 条记录" in body and "窗口：已完成 6 / 8" in body and "预计剩余：2 分 5 秒" in body
    failed = Problem(3, "2022-01-08 00:00:00", "2022-01-15 00:00:00", "failed", "gave up after 8 failures")
    finished = _progress("done", (failed,), 1.0)
    done = export_card(finished)
    assert done.final and done.content["header"]["template"] == "red"
    assert done.content["elements"][2]["actions"][0]["value"] == {"action": "export_retry", "run": 7}
    assert "⚠ 窗口 3（2022-01-08～2022-01-15）failed：gave up after 8 failures" in export_lines(finished)
    assert finished.failed_windows == [3] and done.digest != running.digest


def test_coze_sync_card_says_what_the_message_says():
    state = {"status": "done", "total_records": 12, "records_synced": 12, "records_failed": 0}
    card = coze_sync_card(4, state, "同步完成，成功同步 12 条记录")
    assert card.final and card.content["header"]["template"] == "green"
    assert card.content["elements"][1]["text"]["content"] == "同步完成，成功同步 12 条记录"
