"""Sizing fresh windows by counting: each window as long as the list endpoint's totals allow
(gallop and bisect in `windows.fit_window`), instead of guessing from density.

`size_windows` is the decision, given any way to count; `size_by_counting` wires it to the
contract endpoint — throttled across processes, retried on throttling and server errors — and
falls back to an empty list (the planner then sizes by density) when counting is unavailable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from bot.export import auth as export_auth
from bot.export.contract import Answer, bounds
from bot.export.runner import Step
from bot.export.throttle import COUNT_KEY, wait_for_slot
from bot.export.windows import Window, fit_window
from bot.services import Services

log = logging.getLogger(__name__)

Count = Callable[[datetime, datetime], int]


class CountUnavailable(RuntimeError):
    """The list endpoint cannot be used to count (auth, unknown endpoint, no total)."""


class CountRetryable(CountUnavailable):
    """Throttled or a server error: worth a few quick retries."""


def size_windows(step: Step, count: Count) -> list[Window]:
    """Up to `step.fresh_wanted` consecutive windows from the run's cursor, each the longest
    that `count` says holds fewer records than the cap. Raises CountUnavailable from `count`."""
    assert step.options is not None and step.cursor is not None and step.end is not None
    plan_options = step.options.plan()
    cursor, density = step.cursor, step.density
    sized: list[Window] = []
    for _ in range(step.fresh_wanted):
        guess = (
            plan_options.initial
            if not density
            else timedelta(seconds=plan_options.fill * plan_options.cap / density)
        )
        window = fit_window(cursor, step.end, count, plan_options, guess)
        if window is None:
            break
        sized.append(window)
        cursor = window.end
    return sized


def size_by_counting(services: Services, step: Step) -> tuple[list[Window], int]:
    """Windows sized by the contract's list endpoint, and how many count calls that took.
    On any failure to count, no windows: the planner falls back to density this time."""
    assert step.options is not None
    options, settings = step.options, services.settings
    calls = 0

    @retry(retry=retry_if_exception_type(CountRetryable), stop=stop_after_attempt(6),
           wait=wait_random_exponential(multiplier=0.2, max=5), reraise=True)
    def count(start: datetime, end: datetime) -> int:
        nonlocal calls
        wait_for_slot(services.redis, COUNT_KEY, settings.export_count_qps)
        low, high = bounds(start, end, options.finer_bounds)
        calls += 1
        reply = services.contract.count(auth, settings.export_count_path, low, high, options.filters())
        if reply.answer in (Answer.RATE, Answer.SERVER):
            raise CountRetryable(reply.detail)
        if reply.answer is not Answer.OK or reply.total is None:
            raise CountUnavailable(reply.detail)
        return reply.total

    try:
        auth = export_auth.load(services.engine, services.secret_box)
        return size_windows(step, count), calls
    except (CountUnavailable, export_auth.NoExportAuth) as exc:
        log.warning("cannot count records; sizing by density", extra={"error": str(exc)})
        return [], calls
