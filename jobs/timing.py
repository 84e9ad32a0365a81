"""Job instrumentation shared by every job function."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from bot.metrics import JOB_DURATION, JOB_FAILURES

P = ParamSpec("P")
R = TypeVar("R")


def instrumented(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                result = func(*args, **kwargs)
            except BaseException:
                JOB_DURATION.labels(name, "failed").observe(time.perf_counter() - started)
                JOB_FAILURES.labels(name).inc()
                raise
            JOB_DURATION.labels(name, "ok").observe(time.perf_counter() - started)
            return result

        return wrapper

    return decorate
