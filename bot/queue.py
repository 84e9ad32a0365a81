"""The queues, the name of every job, and the two ways work gets onto a queue.

Jobs are enqueued by their dotted name (`Jobs.PLAN_EXPORT`), never by importing the function:
`jobs/` is the thin RQ layer on top of `bot/`, and `bot/` does not import it. RQ imports the
function by that name in the worker. `tests/test_layers.py` imports every name listed here, so a
renamed or moved job fails a test instead of a worker in production.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

log = logging.getLogger(__name__)


class QueueName(StrEnum):
    DEFAULT = "default"
    EXPORTS = "exports"
    DOWNLOADS = "downloads"
    COZE = "coze"
    PIPELINES = "pipelines"  # pipeline runs: long (a backfill), kept off the event queue


ALL_QUEUES: tuple[str, ...] = tuple(q.value for q in QueueName)


class Jobs:
    """Every RQ job function, by the name RQ imports it with (plain strings: RQ stores them)."""

    # intake (bot/intake)
    PROCESS_EVENTS = "jobs.events.process_events"
    SWEEP_RECEIPTS = "jobs.events.sweep_receipts"
    # tokens and alerts (bot/tokens, bot/alerts.py)
    REFRESH_DUE_TOKENS = "jobs.tokens.refresh_due_tokens"
    DELIVER_ALERTS = "jobs.alerts.deliver_alerts"
    # caches (bot/caches)
    SYNC_CACHE_SOURCE = "jobs.caches.sync_cache_source"
    SCHEDULE_CACHE_SYNCS = "jobs.caches.schedule_cache_syncs"
    APPLY_CACHE_CHANGES = "jobs.caches.apply_cache_changes"
    REFRESH_CACHE_SCHEMA = "jobs.caches.refresh_cache_schema"
    REFRESH_CACHE_FORMULAS = "jobs.caches.refresh_cache_formulas"
    # contract export (bot/export)
    PLAN_EXPORT = "jobs.export.plan_export"
    SUBMIT_EXPORT_WINDOW = "jobs.export.submit_export_window"
    DOWNLOAD_EXPORT_FILE = "jobs.export.download_export_file"
    POLL_EXPORT_MESSAGES = "jobs.export.poll_export_messages"
    TICK_EXPORTS = "jobs.export.tick_exports"
    # Coze sync (bot/coze)
    DISPATCH_COZE_OUTBOX = "jobs.coze.dispatch_coze_outbox"
    COZE_MANUAL_SYNC = "jobs.coze.coze_manual_sync"
    POLL_COZE_OUTBOX = "jobs.coze.poll_coze_outbox"
    # pipelines (bot/pipelines)
    RUN_PIPELINE = "jobs.pipelines.run_pipeline"
    RUN_DUE_PIPELINES = "jobs.pipelines.run_due_pipelines"
    # chat (bot/chat)
    REFRESH_CHAT_CARDS = "jobs.chat.refresh_chat_cards"
    # retention (bot/retention.py): receipts, delivered outbox rows, audit trails, export archives
    APPLY_RETENTION = "jobs.retention.apply_retention"

    @classmethod
    def names(cls) -> list[str]:
        return [value for key, value in vars(cls).items() if key.isupper()]


WAITING_JOB_STATES = {JobStatus.SCHEDULED, JobStatus.DEFERRED}  # a scheduler or dependency holds them


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


def job_is_live(connection: Redis, job_id: str | None) -> bool:
    """Whether Redis says the job is waiting or running (what `enqueue_once` trusts: a job a
    worker has just taken off its queue is still `queued` for a moment, and must not be queued
    again under the same id)."""
    if not job_id:
        return False
    try:
        status = Job.fetch(job_id, connection=connection).get_status()
    except NoSuchJobError:
        return False
    return status in WAITING_JOB_STATES or status in (JobStatus.QUEUED, JobStatus.STARTED)


def job_will_run(connection: Redis, job_id: str | None) -> bool:
    """Whether the job will still run (or is running), for the sweeper. What Redis says is not
    enough after a Redis restart replays its append-only file: a job dequeued just before Redis
    died is `queued` but on no queue, and a job whose worker is gone stays `started` until RQ's
    maintenance (every 10 minutes) notices — holding their receipts back that long. So a queued
    job must be on its queue and a started one held by a worker that still exists. A job caught
    between dequeue and start looks dead for a moment: re-queuing its receipts then is harmless,
    since each receipt is claimed atomically."""
    if not job_id:
        return False
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return False
    status = job.get_status()
    if status == JobStatus.QUEUED:
        return Queue(job.origin, connection=connection).get_job_position(job.id) is not None
    if status == JobStatus.STARTED:
        return _held_by_a_worker(connection, job)
    return status in WAITING_JOB_STATES


def _held_by_a_worker(connection: Redis, job: Job) -> bool:
    # A busy worker heartbeats every 30 s with a 90 s lifetime, so its key outlives a kill -9
    # by at most 90 s; a worker riding out an outage retires its previous name at once.
    if not job.worker_name:
        return False
    current = connection.hget(Worker.redis_worker_namespace_prefix + job.worker_name, "current_job")
    return current is not None and current.decode() == job.id


def retire_worker(worker: Worker) -> None:
    """Say that a worker whose round ended (Redis went away under it) is gone, so the job it held
    counts as abandoned now rather than when its key expires. Its work horse may still be
    finishing that job: the receipts' atomic claims keep a re-run from repeating a handler."""
    try:
        worker.register_death()
        worker.set_current_job_id(None)
    except RedisError:
        log.warning("could not retire the previous worker", extra={"worker": worker.name})


def enqueue_once(queue: Queue, job_id: str, job: str, *args: Any, retry: Retry | None = None,
                 timeout: int = 600) -> None:
    """Queue `job` unless a job with this id is already waiting; if it is running, queue one
    follow-up, so work noted while it runs is not left for a periodic sweep."""
    if job_is_live(queue.connection, job_id):
        existing = queue.fetch_job(job_id)
        if existing is None or existing.get_status() != JobStatus.STARTED:
            return
        job_id = f"{job_id}-next"
        if job_is_live(queue.connection, job_id):
            return
    queue.enqueue(job, *args, job_id=job_id, job_timeout=timeout, retry=retry,
                  description=f"{job.rsplit('.', 1)[-1]}{args}")
