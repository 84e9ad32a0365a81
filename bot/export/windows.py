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
from collections.abc import Callable
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


@dataclass(frozen=True)
class PlanOptions:
    cap: int = 1000
    initial: timedelta = timedelta(days=7)
    fill: float = 0.9  # aim new windows at this share of the cap
    min_span: timedelta = DAY  # smaller than a day only if the endpoint takes finer bounds
    max_span: timedelta = timedelta(days=92)
    smoothing: float = 0.5  # weight of the newest accepted window in the density estimate

    def __post_init__(self) -> None:
        if not 0 < self.fill < 1:
            raise ValueError("fill must be between 0 and 1")
        if self.cap < 1:
            raise ValueError("cap must be positive")
        if self.min_span <= timedelta(0) or DAY % self.min_span:
            raise ValueError("min_span must divide a day")


def next_window(
    cursor: datetime, end: datetime, density: float | None, options: PlanOptions
) -> Window | None:
    """Fresh ground from `cursor`, sized from the density seen so far (records per second)."""
    if cursor >= end:
        return None
    if density is None:
        span = options.initial
    elif density == 0:
        span = options.max_span
    else:
        span = timedelta(seconds=options.fill * options.cap / density)
    span = max(options.min_span, min(options.max_span, span))
    span = (span // options.min_span) * options.min_span  # whole units (days by default)
    return Window(cursor, min(end, cursor + span))


def judge(
    window: Window,
    rows: int,
    options: PlanOptions,
    *,
    first_created: datetime | None = None,
    last_created: datetime | None = None,
) -> tuple[Outcome, tuple[Window, ...]]:
    """What a window's file of `rows` rows means, and the windows that replace a split one.

    A possibly truncated file still tells where its rows lie: if they stop well before the
    window's end (or start well after its start) the split goes there, so the part the file
    covered is re-exported whole and the rest separately; otherwise the window is halved.
    Correctness never depends on which rows the endpoint kept: both parts are verified again.
    """
    if rows < options.cap:
        return Outcome.ACCEPTED, ()
    if window.span <= options.min_span:
        return Outcome.UNEXPORTABLE, ()
    unit = options.min_span
    cut = None
    if last_created is not None:
        candidate = window.start + ((last_created - window.start) // unit) * unit
        if window.start < candidate < window.end:
            cut = candidate
    if cut is None and first_created is not None:
        steps = -((window.start - first_created) // unit)  # ceiling
        candidate = window.start + steps * unit
        if window.start < candidate < window.end:
            cut = candidate
    if cut is None:
        return Outcome.SPLIT, window.halves(unit)
    return Outcome.SPLIT, (Window(window.start, cut), Window(cut, window.end))


def smoothed(density: float | None, window: Window, rows: int, options: PlanOptions) -> float:
    seen = rows / window.span.total_seconds()
    return seen if density is None else options.smoothing * seen + (1 - options.smoothing) * density


@dataclass
class Planner:
    """The planning loop in memory (one window at a time); the runner keeps the same state in
    the database instead: cursor and density on the run, split children as planned windows."""

    start: datetime
    end: datetime
    options: PlanOptions = field(default_factory=PlanOptions)
    _cursor: datetime = field(init=False)
    _retry: deque[Window] = field(init=False, default_factory=deque)
    _density: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("the range is empty")
        self._cursor = self.start

    @property
    def done(self) -> bool:
        return not self._retry and self._cursor >= self.end

    def take(self) -> Window | None:
        """The next window to export: split parts first, then fresh ground; None when done."""
        if self._retry:
            return self._retry.popleft()
        window = next_window(self._cursor, self.end, self._density, self.options)
        if window is not None:
            self._cursor = window.end
        return window

    def report(
        self,
        window: Window,
        rows: int,
        *,
        first_created: datetime | None = None,
        last_created: datetime | None = None,
    ) -> Outcome:
        """What the exported file of `window` held."""
        outcome, parts = judge(
            window, rows, self.options, first_created=first_created, last_created=last_created
        )
        if outcome is Outcome.ACCEPTED:
            self._density = smoothed(self._density, window, rows, self.options)
        self._retry.extendleft(reversed(parts))  # re-export the parts before anything new
        return outcome


def fit_window(
    cursor: datetime,
    end: datetime,
    count: Callable[[datetime, datetime], int],
    options: PlanOptions,
    guess: timedelta,
) -> Window | None:
    """The longest window from `cursor` that holds fewer than `cap` records by `count`.

    With a way to count records (the UI's list endpoint), a window need not be guessed from
    density: gallop from the density's guess, then bisect, on whole days (fewest count calls);
    only when the first day alone is over the cap, and finer bounds are allowed, bisect within
    it on `min_span`. The export's own file is still what decides acceptance.
    """
    if cursor >= end:
        return None
    target = options.cap - 1
    first = min(end, _next_midnight(cursor))

    def boundary(k: int) -> datetime:  # k ≥ 1: the k-th day boundary after cursor (capped at end)
        return min(end, first + DAY * (k - 1))

    def fits(k: int) -> bool:
        return count(cursor, boundary(k)) <= target

    limit = max(1, options.max_span // DAY)
    k = max(1, min(limit, round(guess / DAY)))
    if fits(k):
        low, high = k, None
        while high is None and boundary(low) < end and low < limit:
            probe = min(limit, low * 2)
            if fits(probe):
                low = probe
            else:
                high = probe
        if high is None:
            return Window(cursor, boundary(low))
    else:
        low, high = 0, k
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    if low > 0:
        return Window(cursor, boundary(low))
    if options.min_span >= DAY or first - cursor <= options.min_span:
        return Window(cursor, first)  # one day (or unit) over the cap: the file check reports it
    unit = options.min_span
    low_steps, high_steps = 0, (first - cursor) // unit
    while high_steps - low_steps > 1:
        middle = (low_steps + high_steps) // 2
        if count(cursor, cursor + unit * middle) <= target:
            low_steps = middle
        else:
            high_steps = middle
    return Window(cursor, cursor + unit * max(1, low_steps))


def _next_midnight(moment: datetime) -> datetime:
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + DAY
