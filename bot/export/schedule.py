"""Putting export work on the queue: plan a run (now, once; or later), submit a window (now, or
when its rate slot comes), download a completion message's file."""

from __future__ import annotations

from datetime import timedelta

from bot.queue import Jobs, QueueName, enqueue_once, retry_policy
from bot.services import Services

DOWNLOAD_RETRIES = [5, 30, 120, 600]


def schedule_plan(services: Services, run_id: int, delay: float | None = None) -> None:
    """Plan the run now (one waiting plan job per run), or once more after `delay` seconds."""
    queue = services.queues[QueueName.EXPORTS]
    if delay:
        queue.enqueue_in(timedelta(seconds=delay), Jobs.PLAN_EXPORT, run_id, job_timeout=300)
    else:
        enqueue_once(queue, f"export-plan-{run_id}", Jobs.PLAN_EXPORT, run_id, timeout=300)


def enqueue_submit(services: Services, window_id: int, delay: float | None = None) -> None:
    queue = services.queues[QueueName.EXPORTS]
    if delay:
        queue.enqueue_in(timedelta(seconds=delay), Jobs.SUBMIT_EXPORT_WINDOW, window_id, job_timeout=120)
    else:
        queue.enqueue(Jobs.SUBMIT_EXPORT_WINDOW, window_id, job_timeout=120,
                      description=f"export window {window_id}")


def enqueue_download(services: Services, file_id: int) -> None:
    services.queues[QueueName.DOWNLOADS].enqueue(
        Jobs.DOWNLOAD_EXPORT_FILE,
        file_id,
        job_id=f"export-download-{file_id}",
        job_timeout=600,
        retry=retry_policy(DOWNLOAD_RETRIES),
        description=f"export file {file_id}",
    )
