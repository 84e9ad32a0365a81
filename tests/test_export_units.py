"""The export's pure parts: curl parsing, file matching, window bounds, backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from bot.export.contract import Answer, bounds, classify
from bot.export.curl import CurlError, parse_curl, problems
from bot.export.matching import OpenWindow, Verdict, match_file
from bot.export.runner import backoff

SEED_CURL = """curl --location 'https://contract.feishu.cn/clm/api/cooperation/exportCooperationRecords' \\
--header 'Timezone-Offset: -480' \\
--header 'csrf-token: csrf-value-123456' \\
--header 'Cookie: session=sess-abcdef123456; sl_session=slsess-987654321; clm_csrf_token=csrf-value-123456' \\
--header 'Content-Type: application/json' \\
--data '{
    "keyword": "",
    "searchTabEnumCode": 0,
    "searchCooperationByCreateTime":["2023-01-01","2023-12-01"]
}'"""

CMD_CURL = (
    'curl ^"https://contract.feishu.cn/clm/api/cooperation/exportCooperationRecords^" ^\n'
    '  -H ^"csrf-token: csrf-value-123456^" ^\n'
    '  -b ^"session=sess-abcdef123456; sl_session=slsess-987654321^" ^\n'
    '  --data-raw ^"^{^\\^"keyword^\\^":^\\^"^\\^",'
    '^\\^"searchCooperationByCreateTime^\\^":[^\\^"2023-01-01^\\^",'
    '^\\^"2023-12-01^\\^"]^}^"'
)


def test_the_seed_curl_is_understood_and_masked():
    auth = parse_curl(SEED_CURL)
    assert auth.url.endswith("/exportCooperationRecords")
    assert (
        auth.cookies["session"] == "sess-abcdef123456"
        and auth.cookies["clm_csrf_token"] == "csrf-value-123456"
    )
    assert auth.headers["csrf-token"] == "csrf-value-123456" and "cookie" not in auth.headers
    assert auth.body["searchCooperationByCreateTime"] == ["2023-01-01", "2023-12-01"]
    assert problems(auth) == []
    shown = repr(auth.masked())
    assert "sess-abcdef123456" not in shown and "csrf-value-123456" not in shown


def test_a_windows_cmd_copy_is_understood():
    auth = parse_curl(CMD_CURL)
    assert auth.cookies["sl_session"] == "slsess-987654321"
    assert auth.body["searchCooperationByCreateTime"] == ["2023-01-01", "2023-12-01"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("wget https://x", "starting with 'curl'"),
        ("curl -H 'csrf-token: x'", "no URL"),
        ("curl https://x --data 'not json'", "not JSON"),
        ("curl 'https://x", "cannot split"),
    ],
)
def test_bad_curls_say_what_is_wrong(text, fragment):
    with pytest.raises(CurlError, match=fragment):
        parse_curl(text)


def test_a_curl_without_session_is_named():
    found = problems(parse_curl("curl https://contract.feishu.cn/x -H 'csrf-token: y' --data '{}'"))
    assert any("session" in p for p in found)


T0 = datetime(2024, 1, 1)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _windows():
    return [
        OpenWindow(1, T0, T0 + timedelta(days=7), NOW),
        OpenWindow(2, T0 + timedelta(days=7), T0 + timedelta(days=14), NOW + timedelta(seconds=5)),
    ]


def test_files_are_matched_by_their_rows_creation_times():
    found = match_file(
        10,
        T0 + timedelta(days=8),
        T0 + timedelta(days=9),
        NOW,
        _windows(),
        file_timeout=timedelta(minutes=10),
    )
    assert found.verdict is Verdict.MATCHED and found.window_id == 2
    straddling = match_file(
        10,
        T0 + timedelta(days=6),
        T0 + timedelta(days=8),
        NOW,
        _windows(),
        file_timeout=timedelta(minutes=10),
    )
    assert straddling.verdict is Verdict.STRAY
    outside = match_file(3, T0 - timedelta(days=1), T0, NOW, _windows(), file_timeout=timedelta(minutes=10))
    assert outside.verdict is Verdict.STRAY


def test_an_empty_file_is_ambiguous_when_several_windows_wait():
    found = match_file(
        0, None, None, NOW + timedelta(seconds=10), _windows(), file_timeout=timedelta(minutes=10)
    )
    assert found.verdict is Verdict.AMBIGUOUS and set(found.candidates) == {1, 2}
    # requested long ago (presumed lost) windows are not candidates; one candidate left
    one = match_file(
        0, None, None, NOW + timedelta(minutes=10, seconds=2), _windows(), file_timeout=timedelta(minutes=10)
    )
    assert one.verdict is Verdict.MATCHED and one.window_id == 2


def test_bounds_are_inclusive_dates_or_seconds():
    assert bounds(T0, T0 + timedelta(days=7), False) == ("2024-01-01", "2024-01-07")
    assert bounds(T0, T0 + timedelta(hours=12), True) == ("2024-01-01 00:00:00", "2024-01-01 11:59:59")


@pytest.mark.parametrize(
    "status, doc, answer",
    [
        (200, {"code": 0, "data": {}}, Answer.OK),
        (401, {"code": 401}, Answer.AUTH),
        (403, None, Answer.AUTH),
        (429, {"code": 429}, Answer.RATE),
        (502, None, Answer.SERVER),
        (None, None, Answer.SERVER),
        (400, {"code": 400}, Answer.BAD_REQUEST),
        (200, {"code": 1234}, Answer.BAD_REQUEST),
    ],
)
def test_answers_are_classified(status, doc, answer):
    assert classify(status, doc) is answer


def test_backoff_grows_with_jitter_and_a_cap():
    rng = random.Random(3)
    waits = [backoff(n, 5.0, 60.0, rng) for n in range(1, 8)]
    assert 2.5 <= waits[0] <= 5.0 and 5.0 <= waits[1] <= 10.0
    assert all(w <= 60.0 for w in waits) and waits[-1] >= 30.0
