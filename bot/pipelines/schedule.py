"""Putting pipeline work on the queue (by job name) and telling which pipelines are due.

A run is one RQ job on the `pipelines` queue, id `pipeline-run-<id>`: `enqueue_once` keeps a
waiting run from being queued twice (the cron re-offers queued and stalled runs every tick).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from bot.pipelines import cadence, store
from bot.queue import Jobs, QueueName, enqueue_once
from bot.services import Services


def run_job_id(run_id: int) -> str:
    return f"pipeline-run-{run_id}"


def enqueue_run(services: Services, run_id: int, *, delay_seconds: float = 0) -> None:
    """Queue the run's job (later, when `delay_seconds`: a retry after a transient failure, or a
    table another run is writing)."""
    queue = services.queues[QueueName.PIPELINES]
    timeout = services.settings.pipeline_job_timeout_seconds
    if delay_seconds > 0:
        queue.enqueue_in(timedelta(seconds=delay_seconds), Jobs.RUN_PIPELINE, run_id,
                         job_id=f"{run_job_id(run_id)}-later", job_timeout=timeout,
                         description=f"pipeline run {run_id} (retry)")
        return
    enqueue_once(queue, run_job_id(run_id), Jobs.RUN_PIPELINE, run_id, timeout=timeout)


@dataclass(frozen=True)
class Due:
    name: str
    slot: datetime  # the schedule slot this run is for (recorded as last_scheduled_at)
    first: date  # the days it covers
    last: date


def due_pipelines(services: Services, now: datetime) -> list[Due]:
    """Enabled, scheduled pipelines whose next slot (after the last one they ran for, or their
    creation) has come, with the days the run should cover."""
    settings = services.settings
    zone = settings.pipeline_timezone
    today = cadence.local_today(now, zone)
    due = []
    for info in store.list_all(services.engine):
        spec = info.spec
        if not info.enabled or not spec.schedule:
            continue
        last = info.last_scheduled_at or info.created_at
        if cadence.next_due(spec.schedule, last, now, zone) > now:
            continue
        if spec.partition:
            first, final = cadence.scheduled_days(today, spec.lag_days, info.covered_through,
                                                  settings.pipeline_catch_up_days)
        else:
            first = final = today - timedelta(days=spec.lag_days)
        due.append(Due(info.name, cadence.latest_slot(spec.schedule, now, zone), first, final))
    return due
