"""Record-changed events keep a bitable cache equal to Feishu, through the real stack."""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections import Counter
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import select

from bot.caches import formulas, store
from bot.caches.sources import parse_source
from bot.caches.sync import sync_source
from bot.db import init_schema
from bot.models import CacheRecord
from bot.services import build_services
from sandbox.seed import BIG_TABLE, DEFECTS_TABLE, QUALITY_APP, QUALITY_NODE
from tests.conftest import make_settings
from tests.export_helpers import wait_for
from tests.helpers import EVERY_FAULT
from tests.stack import BridgeStack

pytestmark = pytest.mark.slow

N_EVENTS = 1000


def _cached(services, source_id: int, table_id: str = DEFECTS_TABLE) -> dict[str, dict]:
    with services.sessions() as session:
        rows = session.execute(select(CacheRecord.record_id, CacheRecord.fields).where(
            CacheRecord.source_id == source_id, CacheRecord.table_id == table_id)).all()
    return {rid: json.loads(fields) for rid, fields in rows}


def _truth(state, table_id: str = DEFECTS_TABLE) -> dict[str, dict]:
    with state.lock:
        return {rid: json.loads(json.dumps(r["fields"]))
                for rid, r in state.apps[QUALITY_APP].tables[table_id].records.items()}


COMPUTED = ("评分", "关联问题描述")  # formula and lookup: no event when only they change


def _entered(records: dict[str, dict]) -> dict[str, dict]:
    """Records without their computed fields: what change events alone keep exact."""
    return {rid: {k: v for k, v in fields.items() if k not in COMPUTED} for rid, fields in records.items()}


def _edit_storm(http: httpx.Client, edit: str, live: list[str], count: int) -> list[str]:
    """`count` user edits, each one change event: adds, edits of a hot set of records (so
    deliveries race each other) and deletes; every 10th event delivered twice. Returns the ids
    still live."""
    rng = random.Random(7)
    for i in range(count):
        roll = rng.random()
        body: dict = {"duplicate": i % 10 == 0}
        if roll < 0.2 or len(live) < 50:
            body["add"] = [{"问题编号": f"NEW-{i}", "工时": i}]
        elif roll < 0.85:
            target = rng.choice(live[:40])  # a hot set: many edits per record
            body["update"] = [{"record_id": target, "fields": {"工时": i, "是否闭环": i % 2 == 0}}]
        else:
            body["delete"] = [live.pop(rng.randrange(40, len(live)))]
        answer = http.post(edit, json=body).json()
        live += [a["record_id"] for a in answer["actions"] if a["action"] == "record_added"]
    return live


@contextmanager
def _cache_stack(tmp_path, database_url, redis_url, sandbox, **env):
    """gunicorn + 2 workers receiving the sandbox's events, and in-process services on the same
    database; yields (stack, services, an HTTP client). Everything is stopped afterwards."""
    base_url, state = sandbox
    stack = BridgeStack(tmp_path, database_url, redis_url, base_url, workers=2, extra_env=env)
    settings = make_settings(tmp_path, database_url=database_url, redis_url=redis_url,
                             feishu_base_url=base_url, var_dir=tmp_path / "var")
    services = build_services(settings)
    init_schema(services.engine)
    stack.start()
    state.sender.config.webhook_url = f"{stack.base_url}/webhook/event"
    http = httpx.Client(timeout=10)
    try:
        yield stack, services, http
    finally:
        http.close()
        state.sender.config.webhook_url = ""
        stack.stop()
        services.close()


def test_thousand_change_events_keep_the_cache_exact(tmp_path, database_url, redis_url, redis_conn, sandbox):
    base_url, state = sandbox
    edit = f"{base_url}/sandbox/bitable/{QUALITY_APP}/{DEFECTS_TABLE}/records"
    with _cache_stack(tmp_path, database_url, redis_url, sandbox) as (stack, services, http):
        source = store.add_source(services.engine, "quality", QUALITY_NODE, parse_source(QUALITY_NODE), 3600)
        assert sync_source(services, "quality").outcome == "synced"  # subscribes, then full read
        assert _cached(services, source.id) == _truth(state)

        # Phase 1: 1,000 events — adds, edits (the same records again and again, so deliveries
        # race each other) and deletes; every 10th delivered twice.
        calls_before = sum(1 for c in state.api_calls if c["path"].endswith("/batch_get"))
        live = _edit_storm(http, edit, list(_truth(state)), N_EVENTS)

        def entered_equal() -> bool:
            return _entered(_cached(services, source.id)) == _entered(_truth(state))

        assert wait_for(entered_equal, timeout=120, interval=0.05), stack.log_text()[-3000:]
        # Deleting a record that others link to changed their lookups without an event: the
        # scheduled formula refresh (what its job runs) makes the cache exact.
        formulas.refresh_computed(services, source.id, DEFECTS_TABLE)
        assert _cached(services, source.id) == _truth(state)
        fetches = sum(1 for c in state.api_calls if c["path"].endswith("/batch_get")) - calls_before
        ratio = fetches / N_EVENTS
        print(f"\n{N_EVENTS} change events → {fetches} batch_get calls ({ratio:.3f} per event)")
        assert ratio < 0.5

        # Phase 2: freshness, one edit at a time: edit → cache shows it.
        latencies = []
        for i in range(40):
            target = live[i]
            started = time.monotonic()
            http.post(edit, json={"update": [{"record_id": target, "fields": {"工时": 10_000 + i}}]})
            def shows(t=target, v=10_000 + i) -> bool:
                return _cached(services, source.id).get(t, {}).get("工时") == v

            assert wait_for(shows, timeout=10, interval=0.05)
            latencies.append(time.monotonic() - started)
        p95 = sorted(latencies)[math.ceil(0.95 * len(latencies)) - 1]
        print(f"event → cache freshness: p50 {statistics.median(latencies) * 1000:.0f} ms, "
              f"p95 {p95 * 1000:.0f} ms")
        assert p95 < 2.0


def test_change_events_keep_the_cache_exact_with_every_fault_on(tmp_path, database_url, redis_url,
                                                                 redis_conn, sandbox):
    base_url, state = sandbox
    edit = f"{base_url}/sandbox/bitable/{QUALITY_APP}/{DEFECTS_TABLE}/records"
    with _cache_stack(tmp_path, database_url, redis_url, sandbox,
                      FEISHU_RETRY_MAX_WAIT="2") as (stack, services, http):
        permission = f"{base_url}/sandbox/files/{QUALITY_APP}/permission"
        http.post(permission, json={"role": "read"}).raise_for_status()
        http.post(f"{base_url}/sandbox/faults", json=EVERY_FAULT).raise_for_status()
        source = store.add_source(services.engine, "quality", QUALITY_NODE, parse_source(QUALITY_NODE), 3600)
        # Refused subscribe: the sync still reads every record (while the big table churns).
        assert sync_source(services, "quality").outcome == "synced"
        [summary] = store.summary(services.engine)
        assert summary["events"].startswith("no change events: subscribe refused (code 1069603)")
        assert _cached(services, source.id) == _truth(state)

        # The owner makes the app a manager: the next sync subscribes; then the edit storm.
        http.post(permission, json={"role": "manage"}).raise_for_status()
        assert sync_source(services, "quality", force=True).outcome == "synced"
        assert store.summary(services.engine)[0]["events"] == "change events"
        _edit_storm(http, edit, list(_truth(state)), N_EVENTS // 3)

        def exact(table_id: str) -> bool:
            return _entered(_cached(services, source.id, table_id)) == _entered(_truth(state, table_id))

        assert wait_for(lambda: exact(DEFECTS_TABLE) and exact(BIG_TABLE), timeout=180), \
            stack.log_text()[-3000:]
        formulas.refresh_computed(services, source.id, DEFECTS_TABLE)
        assert _cached(services, source.id) == _truth(state)
        faulted = Counter(c.get("fault") or c["status"] for c in state.api_calls if c["status"] != 200)
        print(f"\nfaults met on the way: {dict(faulted)}")
        assert {"reset", "html_502", 429, 500} <= set(faulted)
