"""Pure window planning for the contract export (no I/O).

The export endpoint returns at most `cap` records per call, truncating silently. The planner
hands out time windows [start, end) over the range, sizing each new one from the density seen
so far so it lands near — but under — the cap (`fill`). A file holding `cap` rows or more may
be truncated, so its window is split in two and both halves are exported again; it is never
accepted. A window that cannot be split further (one day, or `min_span` when finer bounds
are allowed) and still hits the cap is reported as unexportable: nothing is dropped silently.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

DAY = timedelta(days=1)


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    SPLIT = "split"  # the file may be truncated: its halves were queued instead
    UNEXPORTABLE = "unexportable"  # at the cap and too short to split


@dataclass(frozen=True, order=True)
class Window:
    start: datetime
    end: datetime  # exclusive

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    def halves(self, unit: timedelta) -> tuple[Window, Window]:
        """Split at a multiple of `unit` from the start (whole days unless finer bounds are allowed)."""
        steps = max(1, (self.span // unit) // 2)
        middle = self.start + unit * steps
        return Window(self.start, middle), Window(middle, self.end)


@dataclass
class Planner:
    start: datetime
    end: datetime
    cap: int = 1000
    initial: timedelta = timedelta(days=7)
    fill: float = 0.9  # aim new windows at this share of the cap
    min_span: timedelta = DAY  # smaller than a day only if the endpoint takes finer bounds
    max_span: timedelta = timedelta(days=92)
    _cursor: datetime = field(init=False)
    _retry: deque[Window] = field(init=False, default_factory=deque)
    smoothing: float = 0.5  # weight of the newest accepted window in the density estimate
    _density: float | None = field(init=False, default=None)  # rows per second, smoothed

    def __post_init__(self) -> None:
        if not 0 < self.fill < 1:
            raise ValueError("fill must be between 0 and 1")
        if self.end <= self.start:
            raise ValueError("the range is empty")
        self._cursor = self.start

    @property
    def done(self) -> bool:
        return not self._retry and self._cursor >= self.end

    def take(self) -> Window | None:
        """The next window to export: split halves first, then fresh ground; None when done."""
        if self._retry:
            return self._retry.popleft()
        if self._cursor >= self.end:
            return None
        window = Window(self._cursor, min(self.end, self._cursor + self._next_span()))
        self._cursor = window.end
        return window

    def report(self, window: Window, rows: int) -> Outcome:
        """What the exported file of `window` held."""
        if rows < self.cap:
            seen = rows / window.span.total_seconds()
            self._density = seen if self._density is None else (
                self.smoothing * seen + (1 - self.smoothing) * self._density)
            return Outcome.ACCEPTED
        if window.span <= self.min_span:
            return Outcome.UNEXPORTABLE
        first, second = window.halves(self.min_span)
        self._retry.extendleft([second, first])  # re-export both halves before anything new
        return Outcome.SPLIT

    def _next_span(self) -> timedelta:
        if self._density is None:
            span = self.initial
        elif self._density == 0:
            span = self.max_span
        else:
            span = timedelta(seconds=self.fill * self.cap / self._density)
        span = max(self.min_span, min(self.max_span, span))
        return (span // self.min_span) * self.min_span  # whole units (days by default)
