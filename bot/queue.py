"""The queues, in one place, and how work gets onto them."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from enum import StrEnum

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.queue import EnqueueData

log = logging.getLogger(__name__)


class QueueName(StrEnum):
    DEFAULT = "default"
    EXPORTS = "exports"
    DOWNLOADS = "downloads"
    COZE = "coze"


ALL_QUEUES: tuple[str, ...] = tuple(q.value for q in QueueName)

PROCESS_EVENTS = "jobs.events.process_events"
LIVE_JOB_STATES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def connect_redis(url: str) -> Redis:
    """Short timeouts and one quick retry: Feishu wants an answer within 3 s, and a receipt that
    could not be enqueued is picked up by the sweeper anyway (redis-py's default retries with
    backoff would hold the webhook for seconds while Redis is down)."""
    return Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=1,
        health_check_interval=30,
        retry=RedisRetry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
    )


def queues(connection: Redis) -> dict[str, Queue]:
    return {name: Queue(name, connection=connection) for name in ALL_QUEUES}


def retry_policy(intervals: list[int]) -> Retry:
    return Retry(max=len(intervals), interval=intervals)


def new_event_job_id() -> str:
    """Chosen before the receipts are inserted, so each receipt row names the job that carries it."""
    return f"events-{uuid.uuid4().hex}"


MAX_EVENTS_PER_JOB = 256


def event_job_options(receipt_ids: Sequence[int]) -> dict:
    # Handlers run one after another inside the job: its time limit grows with the batch.
    return {"timeout": 300 + 10 * len(receipt_ids), "result_ttl": 600, "failure_ttl": 30 * 24 * 3600}


def events_job_data(receipt_ids: Sequence[int], intervals: list[int], job_id: str) -> EnqueueData:
    """The job that processes a batch of receipts. It carries only their ids: one job per intake
    batch (not per event) keeps RQ's per-job cost off the webhook's hot path."""
    ids = sorted(receipt_ids)
    return Queue.prepare_data(
        PROCESS_EVENTS,
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


def job_is_live(connection: Redis, job_id: str | None) -> bool:
    if not job_id:
        return False
    try:
        return Job.fetch(job_id, connection=connection).get_status() in LIVE_JOB_STATES
    except NoSuchJobError:
        return False


def enqueue_once(queue: Queue, job_id: str, func, *args, retry: Retry | None = None,
                 timeout: int = 600) -> None:
    """Queue `func` unless a job with this id is already waiting; if it is running, queue one
    follow-up, so work noted while it runs is not left for a periodic sweep."""
    if job_is_live(queue.connection, job_id):
        existing = queue.fetch_job(job_id)
        if existing is None or existing.get_status() != JobStatus.STARTED:
            return
        job_id = f"{job_id}-next"
        if job_is_live(queue.connection, job_id):
            return
    queue.enqueue(func, *args, job_id=job_id, job_timeout=timeout, retry=retry,
                  description=f"{getattr(func, '__name__', func)}{args}")
