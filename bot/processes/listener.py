"""The listener process: Feishu's long connection in, durable receipts and queued jobs out.

Run 1–3 per deployment (`feishu-bridge listen`, the Procfile's `listener:`): Feishu delivers each
event to one connected client, chosen at random, and re-sends whatever is not acknowledged
within 3 s, so a second listener is a hot spare rather than a duplicate. The connection runs on
lark-oapi's module-level event loop, which is this process's main loop; events are recorded by
the same group-commit `Recorder` the webhook uses.
"""

from __future__ import annotations

import functools
import logging
import os
import signal

from prometheus_client import multiprocess

from bot.config import Settings
from bot.intake.accept import acknowledge
from bot.intake.connection import LongConnection
from bot.intake.recorder import Recorder
from bot.metrics import METRICS_DIR_ENV
from bot.services import build_services

log = logging.getLogger(__name__)


def run_listener(settings: Settings) -> None:
    """Stay connected until SIGTERM or SIGINT, then finish in-flight events and close."""
    services = build_services(settings)
    recorder = Recorder(services)
    connection = LongConnection(
        settings.feishu_app_id, settings.feishu_app_secret.get_secret_value(), settings.feishu_base_url,
        functools.partial(acknowledge, recorder),
        discovery_timeout=settings.ws_discovery_timeout_seconds,
        liveness_intervals=settings.ws_liveness_intervals,
        reconnect_cap=settings.ws_reconnect_max_seconds,
        threads=settings.ws_threads,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: connection.stop())
    log.info("listener starting", extra={"domain": settings.feishu_base_url})
    try:
        connection.run_forever()
    finally:
        services.close()
        if os.environ.get(METRICS_DIR_ENV):  # its gauges stop counting once it is gone
            multiprocess.mark_process_dead(os.getpid())
    log.info("listener stopped")
