"""PostgreSQL only: LISTEN for the triggers' NOTIFY and wake the dispatcher at once, instead
of at the next poll. Runs as a thread of the cron process; reconnects when the DB goes away."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

CHANNEL = "coze_outbox"


def listen(dsn: str, wake: Callable[[], None], stop: threading.Event) -> None:
    import psycopg

    delay = 1.0
    while not stop.is_set():
        try:
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute(f"LISTEN {CHANNEL}")
                delay = 1.0
                while not stop.is_set():
                    # many NOTIFYs in a burst become one wake-up
                    if any(True for _ in connection.notifies(timeout=1.0, stop_after=1000)):
                        wake()
        except Exception as exc:  # DB restarts must not kill the cron process
            log.warning("coze listener reconnecting", extra={"error": str(exc)})
            stop.wait(delay)
            delay = min(delay * 2, 30.0)


def start_listener(database_url: str, wake: Callable[[], None]) -> threading.Event | None:
    """Start the listener thread for a PostgreSQL URL; SQLite has nothing to listen to."""
    if not database_url.startswith("postgresql"):
        return None
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    stop = threading.Event()
    threading.Thread(target=listen, args=(dsn, wake, stop), name="coze-listener", daemon=True).start()
    return stop
