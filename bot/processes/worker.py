"""The worker process: RQ's own Worker, with its scheduler (so retries with backoff fire), run
in rounds so a Redis outage pauses it instead of ending it (see `outages.py`)."""

from __future__ import annotations

import gc
import importlib
import logging
import os
import socket

from bot.config import Settings
from bot.intake.routes import EVENT_HANDLERS
from bot.processes.outages import run_in_rounds
from bot.queue import ALL_QUEUES, Jobs, retire_worker

log = logging.getLogger(__name__)


def preload_job_modules() -> None:
    """Import every module the worker will run code from (the job functions and the event
    handlers, by the names they are registered under): the SDK and the rest are then loaded
    once in the parent, and each forked work horse inherits them instead of importing again."""
    for name in {*Jobs.names(), *EVENT_HANDLERS.values()}:
        importlib.import_module(name.rsplit(".", 1)[0])
    importlib.import_module("lark_oapi")  # the modules above import it only where they call Feishu


def run_worker(settings: Settings, queue_names: list[str] | None = None, *, burst: bool = False) -> bool:
    """Process jobs until stopped (or, with burst, until the queues are empty), through Redis
    outages: RQ's loop ends when Redis goes away; another round starts once it answers."""
    os.environ.setdefault("FB_METRICS_PROCESS_ID", f"worker-{os.getpid()}")
    from rq import Worker

    from bot.services import build_services, install

    preload_job_modules()
    services = build_services(settings)
    install(services)
    _ = services.feishu  # build the lark client in the parent; horses inherit it
    names = queue_names or list(ALL_QUEUES)
    # Every job runs in a forked work horse: freeze what is loaded so a horse's collections do not
    # walk (and copy-on-write) the ~400k objects the SDK leaves behind.
    gc.collect()
    gc.freeze()
    log.info("worker starting", extra={"queues": names, "burst": burst})
    current: list[Worker] = []
    worked: list[bool] = []

    def one_round(number: int) -> None:
        # A worker whose Redis vanished could not register its death: the next round takes a
        # new name, or RQ would refuse to start ("there exists an active worker named …").
        suffix = f".{number}" if number else ""
        if current:
            retire_worker(current[0])
        worker = Worker([services.queues[n] for n in names], connection=services.redis,
                        name=f"{socket.gethostname()}.{os.getpid()}{suffix}")
        # RQ logs each job at INFO several times over; bot.logs demotes those lines to DEBUG,
        # and this one RQ can leave out itself. A failed job still logs its traceback at ERROR.
        worker.log_result_lifespan = False
        current[:] = [worker]
        worked.append(worker.work(with_scheduler=True, burst=burst,
                                  logging_level=settings.log_level.upper()))

    def stop_requested() -> bool:  # SIGTERM/SIGINT reached RQ's handler
        return bool(current) and current[0]._shutdown_requested_date is not None

    if burst:  # a one-off drain reports a Redis failure rather than waiting it out
        one_round(0)
    else:
        run_in_rounds(one_round, stop_requested, services.redis, "worker")
    return any(worked)
