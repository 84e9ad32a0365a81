"""Prometheus metrics, aggregated across gunicorn workers and RQ work horses.

prometheus-client's multiprocess mode keeps one file per process under
PROMETHEUS_MULTIPROC_DIR. The CLI sets that directory before this module is imported.
RQ forks a work horse per job, so worker processes name their files after the long-lived
worker (FB_METRICS_PROCESS_ID) rather than each short-lived horse: one file per worker,
written by one horse at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
PROCESS_ID_ENV = "FB_METRICS_PROCESS_ID"

if os.environ.get(METRICS_DIR_ENV) and os.environ.get(PROCESS_ID_ENV):
    values.ValueClass = values.MultiProcessValue(
        process_identifier=lambda: os.environ.get(PROCESS_ID_ENV) or str(os.getpid())
    )

EVENTS_RECEIVED = Counter(
    "feishu_bridge_events_received_total", "Events recorded as new receipts", ["event_type"]
)
EVENTS_DUPLICATE = Counter(
    "feishu_bridge_events_duplicate_total", "Re-deliveries of an already recorded event", ["event_type"]
)
EVENTS_REJECTED = Counter(
    "feishu_bridge_events_rejected_total", "Webhook requests refused with a 4xx", ["reason"]
)
EVENTS_UNAVAILABLE = Counter(
    "feishu_bridge_events_unavailable_total", "Webhook requests answered 503 (storage down)"
)
JOB_DURATION = Histogram(
    "feishu_bridge_job_duration_seconds",
    "Wall time of RQ jobs",
    ["job", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
JOB_FAILURES = Counter("feishu_bridge_job_failures_total", "RQ job runs that raised", ["job"])
TOKEN_REFRESHES = Counter(
    "feishu_bridge_user_token_refreshes_total", "User token refresh attempts by outcome",
    ["outcome"],
)
FEISHU_RETRIES = Counter(
    "feishu_bridge_feishu_retries_total", "Feishu calls retried after a rate limit or server error",
    ["operation"],
)
RETENTION_DELETED = Counter(
    "feishu_bridge_retention_deleted_total",
    "Rows (export_archives: files) deleted by the retention job", ["table"],
)
RETENTION_OLDEST_AGE = Gauge(
    "feishu_bridge_retention_oldest_row_age_seconds",
    "Age of each retained table's oldest row when the retention job last ran", ["table"],
    multiprocess_mode="mostrecent",
)
TOKEN_RETRIES = Counter(
    "feishu_bridge_token_rejected_retries_total",
    "API calls answered with a token expired/invalid code, refreshed and retried once", ["token"],
)

# The long connection (bot/intake/connection.py), one sample per `listen` process.
WS_CONNECTED = Gauge(
    "feishu_ws_connected", "Long connections to Feishu currently open", multiprocess_mode="livesum",
)
WS_RECONNECTS = Counter(
    "feishu_ws_reconnects_total",
    "Long connections replaced, by reason (closed, silent, connect_failed, refused)", ["reason"],
)
WS_LAST_FRAME_AGE = Gauge(
    "feishu_ws_last_frame_age_seconds",
    "Seconds since the long connection last received a frame (pong or event); the oldest listener's",
    multiprocess_mode="livemax",
)


def prepare_multiprocess_dir(directory: Path, *, wipe: bool) -> None:
    """Create (and on a fresh start, empty) the shared metrics directory."""
    directory.mkdir(parents=True, exist_ok=True)
    if wipe:
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)


class QueueDepthCollector(Collector):
    """Queue depths are read from Redis at scrape time, not counted by any one process."""

    def __init__(self, queues_provider) -> None:
        self._queues_provider = queues_provider

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("feishu_bridge_queue_depth", "Jobs waiting per queue", labels=["queue"])
        failed = GaugeMetricFamily(
            "feishu_bridge_queue_failed_jobs", "Jobs in the failed registry per queue", labels=["queue"]
        )
        try:
            for name, queue in self._queues_provider().items():
                depth.add_metric([name], queue.count)
                failed.add_metric([name], queue.failed_job_registry.count)
        except Exception:
            pass
        yield depth
        yield failed


def render(queues_provider) -> bytes:
    """Prometheus text: every process's counters, then queue depths read from Redis now."""
    if os.environ.get(METRICS_DIR_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    queue_registry = CollectorRegistry()
    queue_registry.register(QueueDepthCollector(queues_provider))
    return generate_latest(registry) + generate_latest(queue_registry)
