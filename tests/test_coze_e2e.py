"""Coze sync with the real processes: a template created over HTTP (gunicorn), changes written by
another program, delivered by RQ workers woken by the cron (SQLite) or NOTIFY (PostgreSQL) —
nobody runs a script. The workers are killed with SIGKILL mid-delivery and restarted: every
event still arrives, in per-row order; only calls in flight at the kill may arrive twice."""

from __future__ import annotations

import subprocess
from collections import defaultdict

import httpx
import pytest
from sqlalchemy import func, select

from bot.db import init_schema, make_engine
from bot.models import CozeOutbox
from sandbox.coze import COZE_SANDBOX_KEY
from sandbox.demo_tables import create_demo_tables
from tests.coze_helpers import CUSTOMER_FIELDS, Workload, normalise
from tests.export_helpers import wait_for
from tests.stack import BridgeStack

pytestmark = pytest.mark.slow
ADMIN = "admin-token-for-e2e-0001-0123456789abcdef"


def _undelivered(engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(
            select(func.count()).select_from(CozeOutbox).where(CozeOutbox.status != "delivered")
        )


def test_changes_reach_coze_unattended_and_survive_kill_nine(
    tmp_path, database_url, redis_url, redis_conn, sandbox
):
    base_url, state = sandbox
    engine = make_engine(database_url)
    init_schema(engine)
    create_demo_tables(engine)
    stack = BridgeStack(
        tmp_path,
        database_url,
        redis_url,
        base_url,
        workers=2,
        cron=True,
        extra_env={
            "ADMIN_TOKEN": ADMIN,
            "COZE_POLL_SECONDS": "1",
            "COZE_BACKOFF_SECONDS": "0.2",
            "COZE_BACKOFF_MAX_SECONDS": "1",
            "COZE_CLAIM_LEASE_SECONDS": "3",
            "COZE_BATCH_SIZE": "50",
        },
    )
    stack.start()
    try:
        made = httpx.post(
            f"{stack.base_url}/api/v1/coze-sync-templates/",
            headers={"Authorization": f"Bearer {ADMIN}"},
            json={
                "table_name": "customers",
                "config_title": "客户数据同步",
                "coze_workflow_id": "customer_sync_workflow",
                "coze_api_url": base_url,
                "coze_api_key": COZE_SANDBOX_KEY,
                "selected_fields": CUSTOMER_FIELDS,
                "sync_on_delete": True,
                "field_mapping": {"operation_field": "sync_operation"},
            },
        )
        assert made.status_code == 201, made.text
        httpx.post(f"{base_url}/sandbox/coze/faults", json={"slow_seconds": 0.02}).raise_for_status()
        workload = Workload(seed=11)
        for _ in range(16):  # 800 changes from "another program": plain SQL transactions
            with engine.begin() as connection:
                for _ in range(50):
                    workload.step(connection)
        total = sum(len(events) for events in workload.expected.values())
        assert wait_for(lambda: len(state.coze.delivered()) >= total // 3, 120), (
            "nothing was delivered unattended"
        )
        workers = [p for p in stack.processes if "worker" in p.args]
        for process in workers:
            subprocess.run(["pkill", "-9", "-P", str(process.pid)], check=False)  # its work horse, mid-job
            process.kill()  # SIGKILL mid-delivery: claims are left behind
            process.wait()
            stack.processes.remove(process)
        killed_at = len(state.coze.delivered())
        for _ in workers:
            stack._spawn(workers[0].args, stack.env(), open(tmp_path / "stack.log", "ab"))  # noqa: SIM115
        assert wait_for(lambda: _undelivered(engine) == 0, 180), f"{_undelivered(engine)} undelivered"
    finally:
        stack.stop()
        engine.dispose()
    delivered = state.coze.delivered()
    received: dict[str, list] = defaultdict(list)
    for call in delivered:
        event = normalise(call["parameters"])
        if (
            not received[call["parameters"]["user_id"]]
            or received[call["parameters"]["user_id"]][-1] != event
        ):
            received[call["parameters"]["user_id"]].append(event)  # a repeat of the same event: at-least-once
    assert dict(received) == dict(workload.expected)
    duplicates = len(delivered) - total
    assert 0 <= duplicates <= 2 * 50, duplicates  # at most the two killed workers' claimed batches
    print(f"\n{total} events, {killed_at} delivered before the kill, {duplicates} re-sent after it")
