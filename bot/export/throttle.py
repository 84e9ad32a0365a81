"""Rate slots shared by every process: the contract endpoints are called at most `qps` times a
second across all workers. A slot is a Redis key that lives for one gap (1/qps); whoever sets
it first has the slot, the others learn how long until the next one."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis

SUBMIT_KEY = "fb:export:qps"  # exports submitted
COUNT_KEY = "fb:export:count-qps"  # list calls that size windows


def take_slot(redis: Redis, key: str, qps: float) -> float:
    """0 when this caller got the slot, else the seconds until the current slot ends."""
    gap_ms = max(1, int(1000 / max(qps, 0.001)))
    if redis.set(key, 1, nx=True, px=gap_ms):
        return 0.0
    return max(redis.pttl(key), 1) / 1000


def wait_for_slot(redis: Redis, key: str, qps: float, sleep: Callable[[float], None] = time.sleep) -> None:
    """Block until this caller has a slot (for short calls made inside one job)."""
    while (wait := take_slot(redis, key, qps)) > 0:
        sleep(wait)
