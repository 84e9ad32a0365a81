"""Event jobs through a real RQ worker, the real SDK and the sandbox."""

from __future__ import annotations

import json
from datetime import timedelta

from rq import Queue, SimpleWorker, Worker
from rq.registry import FailedJobRegistry
from sqlalchemy import select, update

from bot.intake import receipts
from bot.intake.parse import ParsedEvent
from bot.intake.schedule import enqueue_events
from bot.models import EventReceipt, utcnow
from bot.queue import job_is_live, job_will_run
from jobs.events import sweep_receipts
from tests.helpers import sender, text_message_event


def _record_ping(services, state, text="/ping", event_id="ev-1") -> tuple[int, str]:
    user_message = state.add_user_message("oc_chat", "ou_user", json.dumps({"text": text}))
    doc = text_message_event(sender(), text, event_id=event_id, message_id=user_message.message_id)
    doc["header"].pop("token")
    receipt_id = receipts.record(services.engine, ParsedEvent(event_id, "im.message.receive_v1", "2.0", doc))
    return receipt_id, user_message.message_id


def _work(services) -> None:
    SimpleWorker([services.queues["default"]], connection=services.redis).work(burst=True)


def _receipt(services, receipt_id) -> EventReceipt:
    with services.sessions() as session:
        return session.get(EventReceipt, receipt_id)


def test_ping_is_answered_pong_through_the_sdk(services, sandbox):
    _, state = sandbox
    receipt_id, message_id = _record_ping(services, state)
    enqueue_events(services.queues["default"], [receipt_id], [0])
    _work(services)
    [reply] = [m for m in state.bot_sent if m.parent_id == message_id]
    assert json.loads(reply.content) == {"text": "pong"}
    assert reply.msg_type == "text"
    row = _receipt(services, receipt_id)
    assert (row.status, row.attempts, row.last_error) == ("done", 1, None)
    assert row.processed_at is not None


def test_a_second_job_for_the_same_receipt_does_nothing(services, sandbox):
    _, state = sandbox
    receipt_id, _ = _record_ping(services, state)
    queue = services.queues["default"]
    enqueue_events(queue, [receipt_id], [0])
    enqueue_events(queue, [receipt_id], [0])  # e.g. the sweeper raced the original
    _work(services)
    replies = [c for c in state.api_calls if c["path"].endswith("/reply")]
    assert len(replies) == 1
    assert _receipt(services, receipt_id).attempts == 1


def test_non_commands_are_done_without_replying(services, sandbox):
    _, state = sandbox
    receipt_id, _ = _record_ping(services, state, text="hello there")
    enqueue_events(services.queues["default"], [receipt_id], [0])
    _work(services)
    assert state.bot_sent == []
    assert _receipt(services, receipt_id).status == "done"


def test_failures_are_retried_then_visible_as_failed(services, sandbox, redis_conn):
    _, state = sandbox
    receipt_id, message_id = _record_ping(services, state)
    state.faults.update({"server_error": 1.0})
    queue = services.queues["default"]
    job = enqueue_events(queue, [receipt_id], [0, 0])  # two retries, no delay
    _work(services)
    row = _receipt(services, receipt_id)
    assert row.status == "failed"
    assert row.attempts == 3
    assert "code=1500" in row.last_error
    registry = FailedJobRegistry(queue=queue)
    assert job.id in registry.get_job_ids()
    exc_string = queue.fetch_job(job.id).latest_result().exc_string
    assert f"receipt {receipt_id}: FeishuAPIError" in exc_string

    # once Feishu recovers, re-queueing the failed job completes it
    state.faults.update({"server_error": 0.0})
    registry.requeue(job.id)
    _work(services)
    assert _receipt(services, receipt_id).status == "done"
    assert [json.loads(m.content)["text"] for m in state.bot_sent if m.parent_id == message_id] == ["pong"]


def test_retry_intervals_come_from_settings(services):
    job = enqueue_events(services.queues["default"], [1], [10, 30, 120])
    assert job.retries_left == 3
    assert job.retry_intervals == [10, 30, 120]


def test_one_failing_receipt_does_not_hold_back_its_batch(services, sandbox):
    _, state = sandbox
    first, m1 = _record_ping(services, state, event_id="ev-1")
    second, m2 = _record_ping(services, state, event_id="ev-2")
    # a /ping whose message Feishu does not know: the reply fails with code 230001, every time
    doc = text_message_event(sender(), "/ping", event_id="ev-bad", message_id="om_missing")
    bad = receipts.record(services.engine, ParsedEvent("ev-bad", "im.message.receive_v1", "2.0", doc))
    queue = services.queues["default"]
    job = enqueue_events(queue, [first, bad, second], [0, 0])
    _work(services)

    assert {m.parent_id for m in state.bot_sent} == {m1, m2}  # each answered once, despite 3 runs
    assert [_receipt(services, r).attempts for r in (first, second)] == [1, 1]
    bad_row = _receipt(services, bad)
    assert (bad_row.status, bad_row.attempts) == ("failed", 3)
    assert "230001" in bad_row.last_error
    assert job.id in FailedJobRegistry(queue=queue).get_job_ids()
    exc_string = queue.fetch_job(job.id).latest_result().exc_string
    assert f"1 of 3 failed; receipt {bad}: FeishuAPIError" in exc_string


def test_sweeper_requeues_unqueued_and_abandoned_receipts(services, sandbox, redis_conn):
    _, state = sandbox
    never_queued, m1 = _record_ping(services, state, event_id="ev-a")
    abandoned, m2 = _record_ping(services, state, event_id="ev-b")
    job_lost, m3 = _record_ping(services, state, event_id="ev-c")
    carried, _ = _record_ping(services, state, event_id="ev-d")
    fresh, _ = _record_ping(services, state, event_id="ev-e")
    queue = services.queues["default"]
    live_job = enqueue_events(queue, [carried], [0])
    long_ago = utcnow() - timedelta(hours=2)
    with services.engine.begin() as conn:
        old = update(EventReceipt).values(received_at=long_ago)
        conn.execute(old.where(EventReceipt.id == never_queued))
        conn.execute(old.where(EventReceipt.id == abandoned)
                     .values(status="processing", claimed_at=long_ago, attempts=1))
        conn.execute(old.where(EventReceipt.id == job_lost).values(job_id="events-gone"))
        conn.execute(old.where(EventReceipt.id == carried).values(job_id=live_job.id))
    # `fresh` is within the grace period, `carried` has a live job
    assert sweep_receipts() == 3
    assert sweep_receipts() == 0  # their new job is queued now: not enqueued twice
    rows = {r: _receipt(services, r) for r in (never_queued, abandoned, job_lost)}
    [new_job_id] = {row.job_id for row in rows.values()}
    assert job_is_live(redis_conn, new_job_id)
    assert Queue("default", connection=redis_conn).job_ids == [live_job.id, new_job_id]
    assert queue.fetch_job(new_job_id).args == (sorted(rows),)
    _work(services)
    with services.sessions() as session:
        statuses = dict(session.execute(select(EventReceipt.id, EventReceipt.status)).all())
    assert statuses == {never_queued: "done", abandoned: "done", job_lost: "done", carried: "done",
                        fresh: "received"}
    assert {m.parent_id for m in state.bot_sent} == {m1, m2, m3, _receipt_message(services, carried)}


def test_sweeper_requeues_receipts_a_redis_restart_stranded(services, sandbox, redis_conn):
    """After Redis replays its append-only file, a job can claim to be queued while on no queue
    (dequeued as Redis died) or started by a worker that no longer exists, and a failed batch's
    retry can be lost. None of them will run again, so their receipts must be swept; a job a live
    worker holds, and a receipt out of attempts, must not be."""
    _, state = sandbox
    queue = services.queues["default"]
    names = ("dequeued", "orphaned", "retry_lost", "exhausted", "held")
    ids = {name: _record_ping(services, state, event_id=f"ev-{name}")[0] for name in names}
    jobs = {name: enqueue_events(queue, [ids[name]], [0]) for name in names}
    redis_conn.delete(queue.key)  # every job left its queue, as a worker's dequeue takes it
    for name in ("orphaned", "retry_lost", "exhausted", "held"):
        jobs[name].set_status("started")
        jobs[name].worker_name = f"worker-{name}"
        jobs[name].save()
    holder = Worker([queue], connection=redis_conn, name="worker-held")
    holder.register_birth()
    holder.set_current_job_id(jobs["held"].id)
    long_ago = utcnow() - timedelta(hours=2)
    with services.engine.begin() as conn:
        for name, receipt_id in ids.items():
            values = {"received_at": long_ago, "job_id": jobs[name].id, "status": "queued"}
            if name in ("retry_lost", "exhausted"):
                values.update(status="failed", attempts=1 if name == "retry_lost" else 3)
            conn.execute(update(EventReceipt).where(EventReceipt.id == receipt_id).values(**values))

    assert sweep_receipts() == 3
    assert not job_will_run(redis_conn, jobs["orphaned"].id) and job_will_run(redis_conn, jobs["held"].id)
    assert job_is_live(redis_conn, jobs["dequeued"].id)  # what enqueue_once trusts: not queued twice
    _work(services)
    with services.sessions() as session:
        statuses = dict(session.execute(select(EventReceipt.id, EventReceipt.status)).all())
    assert {name: statuses[ids[name]] for name in names} == {
        "dequeued": "done", "orphaned": "done", "retry_lost": "done", "exhausted": "failed",
        "held": "queued"}
    holder.register_death()


def _receipt_message(services, receipt_id) -> str:
    return json.loads(_receipt(services, receipt_id).payload)["event"]["message"]["message_id"]
