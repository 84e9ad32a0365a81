"""A held Redis lock that stays held while its holder is alive.

A lock's TTL is what frees it when the holder is killed, so it is short; but one step under it
(a gateway call with its retries, a token exchange with its backoff) can take longer than the
TTL, and renewing between steps would notice only afterwards that another process took the lock
meanwhile. `kept_alive` renews the lock from a background thread every third of its TTL for as
long as the holder runs (a killed process takes the thread with it, so the TTL still frees the
lock), up to `max_hold` seconds — a holder stuck that long lets the lock go.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.lock import Lock

log = logging.getLogger(__name__)


class Keeper:
    """The background renewal of one held lock; `lost` says whether it failed (the lock had
    expired or was taken over)."""

    def __init__(self, lock: Lock, ttl: float, max_hold: float) -> None:
        self._lock, self._ttl, self._max_hold = lock, ttl, max_hold
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lock-keeper", daemon=True)

    def _run(self) -> None:
        from redis.exceptions import LockError, RedisError

        started = time.monotonic()
        while not self._stop.wait(self._ttl / 3):
            if time.monotonic() - started > self._max_hold:
                log.warning("a lock was held longer than its holder may hold it; no longer renewed",
                            extra={"lock": str(self._lock.name), "max_hold": self._max_hold})
                return
            try:
                self._lock.extend(self._ttl, replace_ttl=True)
            except LockError:
                self.lost.set()
                return
            except RedisError:  # Redis blinked: the next tick tries again, within the TTL
                continue

    def renew(self) -> None:
        """Renew now, before a step that must not run without the lock; LockError when it is no
        longer ours (now, or as the background renewal found)."""
        from redis.exceptions import LockError

        if self.lost.is_set():
            raise LockError("the background renewal found the lock gone")
        self._lock.extend(self._ttl, replace_ttl=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def kept_alive(lock: Lock, ttl: float, *, max_hold: float) -> Iterator[Keeper]:
    """Renew an acquired `lock` in the background while the block runs."""
    keeper = Keeper(lock, ttl, max_hold)
    keeper.start()
    try:
        yield keeper
    finally:
        keeper.stop()
