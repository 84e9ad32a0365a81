"""Riding out a Redis outage in the worker and cron processes.

RQ's Worker.work() and CronScheduler.start() both give up when Redis goes away: the loop breaks
(or raises) and the process exits. A bridge whose workers die with every Redis restart needs a
human to bring it back, while everything needed to resume — receipts in the database, jobs in
Redis's append-only file — is still there. So each process runs its RQ loop in *rounds*: when a
round ends without a stop having been asked for, wait for Redis to answer (exponential backoff,
tenacity) and start the next round in the same process.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType

from redis import Redis
from redis.exceptions import RedisError
from tenacity import Retrying, retry_if_exception_type, wait_exponential_jitter

log = logging.getLogger(__name__)

FIRST_WAIT = 0.2  # seconds before the first ping after an outage
MAX_WAIT = 5.0  # ... growing to this: a restarted Redis is noticed within seconds


class StopRound(Exception):
    """SIGTERM/SIGINT while waiting between rounds: nothing runs, so stop at once."""


def _stop_now(signum: int, _frame: FrameType | None) -> None:
    raise StopRound(signal.Signals(signum).name)


def wait_for_redis(redis: Redis, what: str, *, max_wait: float = MAX_WAIT) -> None:
    """Block until Redis answers PING, backing off exponentially (with jitter, so a fleet of
    workers does not reconnect in lock step). SIGTERM/SIGINT raise StopRound meanwhile:
    RQ's own handlers, still installed, would talk to the Redis that is not there."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, _stop_now)
    try:
        retrying = Retrying(
            retry=retry_if_exception_type((RedisError, OSError)),
            wait=wait_exponential_jitter(initial=FIRST_WAIT, max=max_wait),
            reraise=True,
        )
        retrying(redis.ping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.warning("redis answers again; resuming", extra={"loop": what})


def run_in_rounds(one_round: Callable[[int], None], stop_requested: Callable[[], bool],
                  redis: Redis, what: str) -> None:
    """Call `one_round(n)` (n = 0, 1, …) until it ends with a stop requested. A round that
    raises a Redis error, or ends on its own (RQ breaks out of its loop on any error), is
    followed by a wait for Redis and another round. Anything else propagates."""
    number = 0
    while True:
        try:
            one_round(number)
        except (RedisError, OSError) as exc:
            if stop_requested():
                return  # stopping anyway; the error was RQ saying goodbye to a Redis that is gone
            log.warning("redis unavailable; waiting for it", extra={"loop": what, "error": repr(exc)})
        else:
            if stop_requested():
                return
            log.warning("loop ended on its own; waiting for redis", extra={"loop": what})
        try:
            wait_for_redis(redis, what)
        except StopRound:
            return
        number += 1
