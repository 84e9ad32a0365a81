"""Group commit for webhook intake: many concurrent requests, one transaction, one pipeline.

Each request thread hands its event to the process's Recorder and waits. A single writer
thread takes everything that has queued up, records it in one database transaction and
enqueues one RQ job carrying the batch's new receipt ids, then wakes the waiting requests.
Semantics per request are unchanged — a request is answered only after its receipt is
committed and its job enqueued (or Redis was found down, leaving the receipt to the
sweeper) — but SQLite sees one writer per process instead of dozens contending for its
lock, and per-request round trips are shared by the whole batch.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from bot.intake import receipts
from bot.intake.parse import ParsedEvent
from bot.intake.schedule import MAX_EVENTS_PER_JOB, enqueue_events, new_event_job_id
from bot.queue import QueueName
from bot.services import Services

log = logging.getLogger(__name__)

MAX_BATCH = MAX_EVENTS_PER_JOB


class StorageUnavailable(RuntimeError):
    """The database could not record the event: the caller should answer 503."""


@dataclass(frozen=True)
class Recorded:
    receipt_id: int | None  # None: the event_id was already recorded (a re-delivery)
    enqueued: bool


@dataclass
class _Item:
    event: ParsedEvent
    handled: bool
    future: Future[Recorded]


class Recorder:
    def __init__(self, services: Services, timeout: float = 10.0) -> None:
        # Read through `services` at flush time, so a swapped engine or connection takes effect.
        self._services = services
        self._timeout = timeout
        self._inbox: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def record(self, event: ParsedEvent, *, handled: bool) -> Recorded:
        """Record (and for handled types, enqueue) one event; blocks until its batch is done."""
        self._ensure_thread()
        item = _Item(event, handled, Future())
        self._inbox.put(item)
        return item.future.result(timeout=self._timeout)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                # Started lazily, so a gunicorn worker gets its own after the fork.
                self._thread = threading.Thread(target=self._run, name="intake-recorder", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._inbox.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self._flush(batch)
            except Exception as exc:
                log.exception("intake batch failed",
                              extra={"event_ids": [item.event.event_id for item in batch]})
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(StorageUnavailable(str(exc)))

    def _flush(self, batch: list[_Item]) -> None:
        # The same event may arrive twice within one batch (Feishu's duplicate deliveries are
        # often concurrent): only its first copy can be new.
        first: dict[str, _Item] = {}
        for item in batch:
            first.setdefault(item.event.event_id, item)
        job_id = new_event_job_id()
        try:
            rows = [
                receipts.NewReceipt(i.event, "received", job_id) if i.handled
                else receipts.NewReceipt(i.event, "unhandled")
                for i in first.values()
            ]
            new_ids = receipts.record_many(self._services.engine, rows)
        except SQLAlchemyError as exc:
            for item in batch:
                item.future.set_exception(StorageUnavailable(type(exc).__name__))
            return

        to_enqueue = [rid for eid, rid in new_ids.items() if first[eid].handled]
        enqueued = False
        if to_enqueue:
            settings = self._services.settings
            try:
                enqueue_events(self._services.queues[QueueName.DEFAULT], to_enqueue,
                               settings.event_retry_intervals, job_id)
                enqueued = True
            except RedisError:
                # Receipts are durable; the sweeper enqueues them once Redis answers again.
                log.warning("enqueue failed; left for the sweeper", extra={"receipts": len(to_enqueue)})
        for item in batch:
            is_first = first[item.event.event_id] is item
            receipt_id = new_ids.get(item.event.event_id) if is_first else None
            item.future.set_result(Recorded(receipt_id, enqueued and receipt_id is not None and item.handled))
