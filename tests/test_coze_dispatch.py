"""The outbox delivered to the sandbox's Coze through cozepy: 10,000 mixed changes while Coze is
down for part of the run, two dispatchers at once — every event delivered exactly once, mapped
by the seed's rules, in per-row order. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import httpx
import pytest
from sqlalchemy import func, select

from bot.coze import outbox, templates
from bot.coze.dispatch import drain
from bot.coze.spec import FieldMapping
from bot.db import init_schema
from bot.models import CozeDelivery, CozeOutbox, CozeTemplate
from bot.services import build_services, install
from sandbox.demo_tables import create_demo_tables
from tests.conftest import make_settings
from tests.coze_helpers import Workload, customer_spec, normalise

pytestmark = pytest.mark.slow


@pytest.fixture
def coze_services(tmp_path, database_url, redis_url, redis_conn, sandbox):
    base_url, _ = sandbox
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        feishu_base_url=base_url,
        coze_backoff_seconds=0.05,
        coze_backoff_max_seconds=0.5,
        coze_max_attempts=10_000,
        coze_batch_size=200,
        coze_dispatch_threads=8,
    )
    services = build_services(settings)
    init_schema(services.engine)
    create_demo_tables(services.engine)
    install(services)
    yield services
    services.close()


def _dispatcher(services, stop: threading.Event, errors: list) -> None:
    try:
        while not stop.is_set():
            if not drain(services, budget=2.0):
                time.sleep(0.05)
    except Exception as exc:  # surfaced by the test
        errors.append(exc)


def _undelivered(services) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count()).where(CozeOutbox.status != "delivered"))


def test_ten_thousand_changes_through_an_outage_are_delivered_once_in_order(coze_services, sandbox):
    services = coze_services
    base_url, state = sandbox
    spec = customer_spec(base_url, field_mapping=FieldMapping(operation_field="sync_operation"))
    template = templates.create(services, spec)
    workload = Workload(seed=6)
    stop, errors = threading.Event(), []
    dispatchers = [threading.Thread(target=_dispatcher, args=(services, stop, errors)) for _ in range(2)]
    for thread in dispatchers:
        thread.start()
    try:
        for batch in range(200):  # 200 transactions × 50 changes
            if batch == 40:
                httpx.post(f"{base_url}/sandbox/coze/faults", json={"down": True}).raise_for_status()
            if batch == 60:  # make sure the dispatchers met the outage (they may lag the writer)
                met = lambda: any(c["code"] == 502 for c in list(state.coze.calls))  # noqa: E731
                deadline = time.monotonic() + 60
                while not met() and time.monotonic() < deadline:
                    time.sleep(0.1)
            if batch == 120:
                httpx.post(f"{base_url}/sandbox/coze/faults", json={"down": False}).raise_for_status()
            with services.engine.begin() as connection:
                for _ in range(50):
                    workload.step(connection)
        deadline = time.monotonic() + 240
        while _undelivered(services) and time.monotonic() < deadline and not errors:
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in dispatchers:
            thread.join(30)
    assert not errors, errors
    expected_total = sum(len(events) for events in workload.expected.values())

    # the outbox: one row per event, all delivered
    assert outbox.counts(services.engine) == {
        "pending": 0,
        "claimed": 0,
        "delivered": expected_total,
        "dead": 0,
    }
    # the delivery log: exactly one successful call per outbox row; the outage shows as failures
    with services.sessions() as session:
        ok_ids = list(session.scalars(select(CozeDelivery.outbox_id).where(CozeDelivery.ok.is_(True))))
        failures = session.scalar(select(func.count()).where(CozeDelivery.ok.is_(False)))
        execute_ids = set(session.scalars(select(CozeDelivery.execute_id).where(CozeDelivery.ok.is_(True))))
        status = session.get(CozeTemplate, template.id).status
    assert len(ok_ids) == len(set(ok_ids)) == expected_total
    assert failures > 0 and status == "ACTIVE"
    # the sandbox's recorded calls: once each, the right mapping, each row's events in order
    delivered = state.coze.delivered()
    assert len(delivered) == expected_total
    assert {c["execute_id"] for c in delivered} == execute_ids
    received: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for call in delivered:
        assert call["workflow_id"] == "customer_sync_workflow"
        received[call["parameters"]["user_id"]].append(normalise(call["parameters"]))
    expected = {
        uuid: [(op, {**values, "updated_at": values["updated_at"]}) for op, values in events]
        for uuid, events in workload.expected.items()
    }
    assert received == expected
    ops = [op for events in expected.values() for op, _ in events]
    print(
        f"\n{expected_total} events ({ops.count('insert')} inserts, {ops.count('update')} updates, "
        f"{ops.count('delete')} deletes), {failures} failed calls during the outage"
    )
