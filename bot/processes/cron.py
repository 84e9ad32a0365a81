"""The cron process: RQ's CronScheduler enqueues the periodic jobs below (run exactly one per
deployment), and on PostgreSQL it also listens for the Coze outbox's NOTIFY."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from rq.utils import import_attribute

from bot.config import Settings
from bot.processes.outages import run_in_rounds
from bot.queue import Jobs, QueueName

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Periodic:
    job: str
    queue: QueueName
    every: Callable[[Settings], int]  # seconds, from the settings
    timeout: int


SCHEDULE: tuple[Periodic, ...] = (
    Periodic(Jobs.SWEEP_RECEIPTS, QueueName.DEFAULT, lambda s: s.sweep_interval_seconds, 300),
    Periodic(Jobs.REFRESH_DUE_TOKENS, QueueName.DEFAULT, lambda s: s.token_check_interval_seconds, 300),
    Periodic(Jobs.SCHEDULE_CACHE_SYNCS, QueueName.DEFAULT, lambda s: 60, 120),
    Periodic(Jobs.DELIVER_ALERTS, QueueName.DEFAULT, lambda s: s.sweep_interval_seconds, 120),
    Periodic(Jobs.TICK_EXPORTS, QueueName.EXPORTS, lambda s: s.export_tick_seconds, 120),
    Periodic(Jobs.REFRESH_CHAT_CARDS, QueueName.DEFAULT, lambda s: s.chat_card_refresh_seconds, 120),
    Periodic(Jobs.POLL_COZE_OUTBOX, QueueName.COZE, lambda s: s.coze_poll_seconds, 60),
    # due pipelines started, runs whose job was lost re-queued; 0 turns scheduled pipelines off
    Periodic(Jobs.RUN_DUE_PIPELINES, QueueName.DEFAULT, lambda s: s.pipeline_tick_seconds, 120),
    Periodic(Jobs.APPLY_RETENTION, QueueName.DEFAULT, lambda s: s.retention_interval_seconds, 600),
    # the only way export files arrive (no event comes from the contract bot's chat); 0 turns it off
    Periodic(Jobs.POLL_EXPORT_MESSAGES, QueueName.EXPORTS, lambda s: s.export_poll_seconds, 300),
)


def build_cron(settings: Settings):
    from rq.cron import CronScheduler

    from bot.queue import connect_redis

    cron = CronScheduler(
        connection=connect_redis(settings.redis_url), logging_level=settings.log_level.upper()
    )
    registered = []
    for entry in SCHEDULE:
        every = entry.every(settings)
        if every > 0:
            name = entry.job.rsplit(".", 1)[-1]
            cron.register(import_attribute(entry.job), queue_name=entry.queue, interval=every,
                          job_timeout=entry.timeout, name=name)
            registered.append(f"{name} {every}s")
    # one line for the schedule; RQ's line per job and per enqueue are DEBUG (see bot.logs)
    log.info("periodic jobs: %s", ", ".join(registered))
    return cron


def run_cron(settings: Settings) -> None:
    """Enqueue periodic jobs on their schedule (run exactly one of these per deployment),
    through Redis outages (see `outages.py`)."""
    from bot.coze.listener import start_listener
    from bot.coze.schedule import wake_dispatcher
    from bot.services import build_services

    services = build_services(settings)
    start_listener(settings.effective_database_url, lambda: wake_dispatcher(services))
    cron = build_cron(settings)
    stopped: list[int] = []
    rq_request_stop = cron._request_stop

    def request_stop(signum, frame) -> None:
        # noted here: RQ then says goodbye to Redis, which fails the same way an outage does
        stopped.append(signum)
        rq_request_stop(signum, frame)

    cron._request_stop = request_stop  # what start() installs for SIGTERM/SIGINT

    def one_round(_number: int) -> None:
        # the same scheduler goes on after an outage, so the schedule keeps its timing
        cron.start()

    run_in_rounds(one_round, lambda: bool(stopped), cron.connection, "cron")
