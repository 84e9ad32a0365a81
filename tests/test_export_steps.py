"""The export's step helpers as plain functions: sizing windows by counting, shared rate slots
(real Redis), and the download fallback from the API to the browser."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from bot.export.download import DownloadFailed, fetch_with_fallback
from bot.export.options import RunOptions
from bot.export.runner import Step
from bot.export.sizing import CountUnavailable, size_windows
from bot.export.throttle import take_slot, wait_for_slot
from bot.feishu import FeishuAPIError

START = datetime(2024, 1, 1)


def _records(per_day: list[int]) -> list[datetime]:
    """`per_day[i]` records spread over day i."""
    return [START + timedelta(days=day, seconds=(n * 86400) // max(1, count))
            for day, count in enumerate(per_day) for n in range(count)]


def _counter(records: list[datetime], calls: list[tuple[datetime, datetime]]):
    def count(start: datetime, end: datetime) -> int:
        calls.append((start, end))
        return sum(1 for at in records if start <= at < end)

    return count


def _step(days: int, wanted: int, cursor: datetime = START, **options) -> Step:
    return Step([], wanted, cursor, START + timedelta(days=days), None, RunOptions(**options))


def test_sized_windows_tile_from_the_cursor_each_under_the_cap():
    per_day = [120, 80, 400, 950, 30, 0, 0, 700, 310, 90] * 3
    records, calls = _records(per_day), []
    windows = size_windows(_step(len(per_day), wanted=4), _counter(records, calls))
    assert len(windows) == 4 and windows[0].start == START
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    for window in windows:
        inside = sum(1 for at in records if window.start <= at < window.end)
        assert inside < 1000
        # as long as the counts allow: one more day would reach the cap (or the range's end)
        longer = window.end + timedelta(days=1)
        assert window.end == START + timedelta(days=len(per_day)) or window.span >= timedelta(days=92) or (
            sum(1 for at in records if window.start <= at < longer) >= 1000
        )
    assert calls  # it counted, rather than guessed


def test_sizing_stops_at_the_end_of_the_range():
    records = _records([10] * 5)
    windows = size_windows(_step(5, wanted=3), _counter(records, []))
    assert [(w.start, w.end) for w in windows] == [(START, START + timedelta(days=5))]


def test_counting_that_fails_reaches_the_caller():
    def unavailable(start, end):
        raise CountUnavailable("list endpoint answered 404")

    with pytest.raises(CountUnavailable):
        size_windows(_step(10, wanted=2), unavailable)


def test_rate_slots_are_shared_and_spaced(redis_conn):
    key = "fb:test:slot"
    assert take_slot(redis_conn, key, qps=5) == 0.0  # the first caller has the slot
    wait = take_slot(redis_conn, key, qps=5)  # the next learns how long until the next one
    assert 0 < wait <= 0.2
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        redis_conn.delete(key)  # time passes: the slot ends

    wait_for_slot(redis_conn, key, qps=5, sleep=sleep)
    assert len(slept) == 1 and 0 < slept[0] <= 0.2
    assert redis_conn.pttl(key) > 0  # and now this caller holds it


def _refused() -> bytes:
    raise FeishuAPIError("im.v1.message_resource.get", 234003, "no permission", "log-1")


def test_download_by_api_when_it_answers():
    assert fetch_with_fallback(lambda: b"xlsx", lambda: pytest.fail("browser not needed")) == (b"xlsx", "api")


def test_download_falls_back_to_the_browser_when_the_api_refuses():
    assert fetch_with_fallback(_refused, lambda: b"from-browser") == (b"from-browser", "browser")


def test_download_fails_with_both_reasons_when_the_browser_fails_too():
    def browser() -> bytes:
        raise TimeoutError("no 下载文件 button")

    with pytest.raises(DownloadFailed) as failed:
        fetch_with_fallback(_refused, browser)
    assert "234003" in str(failed.value) and "下载文件" in str(failed.value)


def test_other_errors_are_not_taken_for_a_refusal():
    def broken() -> bytes:
        raise ConnectionError("sandbox down")

    with pytest.raises(ConnectionError):
        fetch_with_fallback(broken, lambda: pytest.fail("a network error is retried, not worked around"))
