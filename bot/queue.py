"""The queues, in one place, and how work gets onto them."""

from __future__ import annotations

import logging
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

PROCESS_EVENT = "jobs.events.process_event"
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


def event_job_id(receipt_id: int) -> str:
    return f"event-{receipt_id}"


EVENT_JOB_OPTIONS = {"timeout": 300, "result_ttl": 600, "failure_ttl": 30 * 24 * 3600}


def event_job_data(receipt_id: int, intervals: list[int], job_id: str | None = None) -> EnqueueData:
    """The job that processes one receipt: it carries only the receipt id."""
    return Queue.prepare_data(
        PROCESS_EVENT,
        (receipt_id,),
        job_id=job_id or event_job_id(receipt_id),
        retry=retry_policy(intervals),
        description=f"event receipt {receipt_id}",
        **EVENT_JOB_OPTIONS,
    )


def enqueue_event(queue: Queue, receipt_id: int, intervals: list[int]) -> Job:
    [job] = queue.enqueue_many([event_job_data(receipt_id, intervals)])
    return job


def job_is_live(connection: Redis, job_id: str) -> bool:
    try:
        return Job.fetch(job_id, connection=connection).get_status() in LIVE_JOB_STATES
    except NoSuchJobError:
        return False


def requeue_event(queue: Queue, receipt_id: int, intervals: list[int], attempt: int) -> Job | None:
    """Re-enqueue a receipt the sweeper found abandoned, unless its job is still alive."""
    job_id = f"{event_job_id(receipt_id)}-r{attempt}"
    if any(job_is_live(queue.connection, j) for j in (event_job_id(receipt_id), job_id)):
        return None
    [job] = queue.enqueue_many([event_job_data(receipt_id, intervals, job_id)])
    return job
