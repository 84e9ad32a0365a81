"""Applying change events as plain functions: the pending-change loop against a real database
with a scripted fetch, and the deferral while a full sync of the source runs (real Redis)."""

from __future__ import annotations

from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from bot.caches import store
from bot.caches.changes import apply_pending, drain_pending
from bot.caches.sources import parse_source
from bot.caches.sync import SYNC_LOCK_SECONDS, sync_lock_name
from bot.models import CacheRecord
from bot.queue import Jobs
from sandbox.seed import DEFECTS_TABLE, QUALITY_APP

TABLE = "tblChanges"


def _source(services) -> int:
    store.add_source(services.engine, "quality", QUALITY_APP, parse_source(QUALITY_APP), 3600)
    return store.get_source(services.engine, "quality").id


def _cached(services, source_id: int) -> dict[str, str]:
    with services.sessions() as session:
        rows = session.execute(select(CacheRecord.record_id, CacheRecord.fields)
                               .where(CacheRecord.source_id == source_id)).all()
    return dict(rows)


def test_the_loop_fetches_in_batches_until_nothing_is_pending(services):
    source_id = _source(services)
    store.add_pending(services.engine, source_id, TABLE, ["rec1", "rec2", "recGone"])
    fetched: list[list[str]] = []

    def fetch(ids: list[str]):
        fetched.append(ids)
        if len(fetched) == 1:  # an event arrives while the first batch is fetched
            store.add_pending(services.engine, source_id, TABLE, ["rec1", "rec3"])
        found = [{"record_id": r, "fields": {"n": f"{r}@{len(fetched)}"}} for r in ids if r != "recGone"]
        return found, [r for r in ids if r == "recGone"]

    assert drain_pending(services.engine, source_id, TABLE, fetch) == 5
    assert fetched == [["rec1", "rec2", "recGone"], ["rec1", "rec3"]]  # rec1 again: it changed meanwhile
    assert store.pending(services.engine, source_id, TABLE) == []
    assert _cached(services, source_id) == {
        "rec1": '{"n": "rec1@2"}', "rec2": '{"n": "rec2@1"}', "rec3": '{"n": "rec3@2"}'
    }


def test_changes_wait_for_a_running_full_sync(services):
    source_id = _source(services)
    store.add_pending(services.engine, source_id, DEFECTS_TABLE, ["recDefect00000001"])
    lock = services.redis.lock(sync_lock_name("quality"), timeout=SYNC_LOCK_SECONDS)
    assert lock.acquire(blocking=False)
    try:
        assert apply_pending(services, source_id, DEFECTS_TABLE) == {
            "applied": 0, "deferred": "full sync running"
        }
    finally:
        lock.release()
    [job_id] = ScheduledJobRegistry(queue=services.queues["default"]).get_job_ids()
    job = services.queues["default"].fetch_job(job_id)
    assert job.func_name == Jobs.APPLY_CACHE_CHANGES and job.args == (source_id, DEFECTS_TABLE)
    assert store.pending(services.engine, source_id, DEFECTS_TABLE) != []  # nothing was lost


def test_changes_for_a_removed_source_are_skipped(services):
    skipped = apply_pending(services, 424242, DEFECTS_TABLE)
    assert skipped == {"applied": 0, "skipped": "source gone"}
