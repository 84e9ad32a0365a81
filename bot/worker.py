"""The worker and cron processes: RQ's own Worker (with its scheduler) and CronScheduler."""

from __future__ import annotations

import gc
import logging
import os
import socket

from bot.config import Settings
from bot.queue import ALL_QUEUES

log = logging.getLogger(__name__)


def run_worker(settings: Settings, queue_names: list[str] | None = None, *, burst: bool = False) -> bool:
    """Process jobs until stopped (or, with burst, until the queues are empty)."""
    os.environ.setdefault("FB_METRICS_PROCESS_ID", f"worker-{os.getpid()}")
    from rq import Worker

    import handlers  # noqa: F401 - import the SDK once, before forking work horses
    import jobs.events  # noqa: F401
    from bot.services import build_services, install

    services = build_services(settings)
    install(services)
    _ = services.feishu  # build the lark client in the parent; horses inherit it
    names = queue_names or list(ALL_QUEUES)
    worker = Worker(
        [services.queues[n] for n in names],
        connection=services.redis,
        name=f"{socket.gethostname()}.{os.getpid()}",
    )
    # Every job runs in a forked work horse: freeze what is loaded so a horse's collections do not
    # walk (and copy-on-write) the ~400k objects the SDK leaves behind.
    gc.collect()
    gc.freeze()
    log.info("worker starting", extra={"queues": names, "burst": burst})
    return worker.work(with_scheduler=True, burst=burst, logging_level=settings.log_level.upper())


def build_cron(settings: Settings):
    from rq.cron import CronScheduler

    from bot.queue import QueueName, connect_redis
    from jobs.alerts import deliver_alerts
    from jobs.caches import schedule_cache_syncs
    from jobs.chat import refresh_chat_cards
    from jobs.coze import clean_coze_outbox, poll_coze_outbox
    from jobs.export import poll_export_messages, tick_exports
    from jobs.maintenance import sweep_receipts
    from jobs.tokens import refresh_due_tokens

    cron = CronScheduler(
        connection=connect_redis(settings.redis_url), logging_level=settings.log_level.upper()
    )
    cron.register(sweep_receipts, queue_name=QueueName.DEFAULT, interval=settings.sweep_interval_seconds,
                  job_timeout=300, name="sweep_receipts")
    cron.register(refresh_due_tokens, queue_name=QueueName.DEFAULT,
                  interval=settings.token_check_interval_seconds, job_timeout=300, name="refresh_due_tokens")
    cron.register(schedule_cache_syncs, queue_name=QueueName.DEFAULT, interval=60, job_timeout=120,
                  name="schedule_cache_syncs")
    cron.register(deliver_alerts, queue_name=QueueName.DEFAULT, interval=settings.sweep_interval_seconds,
                  job_timeout=120, name="deliver_alerts")
    cron.register(tick_exports, queue_name=QueueName.EXPORTS, interval=settings.export_tick_seconds,
                  job_timeout=120, name="tick_exports")
    cron.register(refresh_chat_cards, queue_name=QueueName.DEFAULT,
                  interval=settings.chat_card_refresh_seconds, job_timeout=120, name="refresh_chat_cards")
    cron.register(poll_coze_outbox, queue_name=QueueName.COZE, interval=settings.coze_poll_seconds,
                  job_timeout=60, name="poll_coze_outbox")
    cron.register(clean_coze_outbox, queue_name=QueueName.COZE, interval=3600, job_timeout=600,
                  name="clean_coze_outbox")
    if settings.export_poll_seconds > 0:
        cron.register(poll_export_messages, queue_name=QueueName.EXPORTS,
                      interval=settings.export_poll_seconds, job_timeout=300, name="poll_export_messages")
    return cron


def run_cron(settings: Settings) -> None:
    """Enqueue periodic jobs on their schedule (run exactly one of these per deployment)."""
    from bot.coze.listener import start_listener
    from bot.services import build_services
    from jobs.coze import wake_dispatcher

    services = build_services(settings)
    start_listener(settings.effective_database_url, lambda: wake_dispatcher(services))
    build_cron(settings).start()
