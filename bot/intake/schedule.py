"""Putting recorded receipts on the queue: one job per intake batch, carrying only receipt ids
(one job per event would put RQ's per-job cost on the webhook's hot path)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from rq import Queue
from rq.job import Job
from rq.queue import EnqueueData

from bot.queue import Jobs, retry_policy

MAX_EVENTS_PER_JOB = 256


def new_event_job_id() -> str:
    """Chosen before the receipts are inserted, so each receipt row names the job that carries it."""
    return f"events-{uuid.uuid4().hex}"


def event_job_options(receipt_ids: Sequence[int]) -> dict:
    # Handlers run one after another inside the job: its time limit grows with the batch.
    return {"timeout": 300 + 10 * len(receipt_ids), "result_ttl": 600, "failure_ttl": 30 * 24 * 3600}


def events_job_data(receipt_ids: Sequence[int], intervals: list[int], job_id: str) -> EnqueueData:
    ids = sorted(receipt_ids)
    return Queue.prepare_data(
        Jobs.PROCESS_EVENTS,
        (ids,),
        job_id=job_id,
        retry=retry_policy(intervals),
        description=f"event receipts {ids[0]}..{ids[-1]} ({len(ids)})",
        **event_job_options(ids),
    )


def enqueue_events(queue: Queue, receipt_ids: Sequence[int], intervals: list[int],
                   job_id: str | None = None) -> Job:
    [job] = queue.enqueue_many([events_job_data(receipt_ids, intervals, job_id or new_event_job_id())])
    return job
