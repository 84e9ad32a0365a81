"""Which window a downloaded file belongs to, decided by its content (pure, no I/O).

Messages carry no reference to the request that caused them, and they can arrive late,
twice, out of order or not at all while several windows are exported at once. A file with
rows belongs to the one open window that contains all of its creation times. An empty file
could belong to any window whose export was requested before the message and recently enough
to still be expected; if that is more than one, the file is ambiguous and those windows are
exported again one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Verdict(StrEnum):
    MATCHED = "matched"
    STRAY = "stray"  # belongs to no open window (a late duplicate, someone else's export)
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class OpenWindow:
    id: int
    start: datetime
    end: datetime  # exclusive
    submitted_at: datetime | None  # the latest accepted submission (UTC)


@dataclass(frozen=True)
class Match:
    verdict: Verdict
    window_id: int | None = None
    candidates: tuple[int, ...] = ()


def match_file(
    rows: int,
    first: datetime | None,
    last: datetime | None,
    message_at: datetime,
    windows: list[OpenWindow],
    *,
    file_timeout: timedelta,
    clock_skew: timedelta = timedelta(seconds=30),
) -> Match:
    if rows:
        assert first is not None and last is not None
        holding = [w.id for w in windows if w.start <= first and last < w.end]
        if len(holding) == 1:
            return Match(Verdict.MATCHED, holding[0], tuple(holding))
        return Match(Verdict.STRAY if not holding else Verdict.AMBIGUOUS, None, tuple(holding))
    expected = [
        w.id
        for w in windows
        if w.submitted_at is not None
        and w.submitted_at - clock_skew <= message_at < w.submitted_at + file_timeout
    ]
    if len(expected) == 1:
        return Match(Verdict.MATCHED, expected[0], tuple(expected))
    return Match(Verdict.STRAY if not expected else Verdict.AMBIGUOUS, None, tuple(expected))
