"""`feishu-bridge coze …` as a user runs it: preview, create (key from stdin, shown masked),
list, an inline manual sync with counts, status, and clear errors instead of tracebacks."""

from __future__ import annotations

import json
import os

from bot.db import init_schema, make_engine
from sandbox.coze import COZE_SANDBOX_KEY
from sandbox.demo_tables import create_demo_tables
from tests.export_helpers import cli


def test_coze_commands_end_to_end(tmp_path, redis_url, sandbox):
    base_url, state = sandbox
    database_url = f"sqlite:///{tmp_path / 'bridge.db'}"
    engine = make_engine(database_url)
    init_schema(engine)
    create_demo_tables(engine, rows=12)
    engine.dispose()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "VAR_DIR": str(tmp_path / "var"),
        "LOG_JSON": "1",
    }

    preview = json.loads(
        cli(env, "coze", "preview", "products", "--fields", "product_name,unit_price", "--json").stdout
    )
    assert preview["sample_data"][1] == {"product_name": "产品0002", "unit_price": "3.25"}

    created = json.loads(
        cli(
            env,
            "coze",
            "create",
            "--title",
            "产品信息同步",
            "--table",
            "products",
            "--workflow",
            "product_sync_workflow",
            "--api-url",
            base_url,
            "--api-key-stdin",
            "--fields",
            "uuid,product_name,product_code,unit_price,current_quantity",
            "--on",
            "insert,update,delete",
            "--json",
            stdin=COZE_SANDBOX_KEY + "\n",
        ).stdout
    )
    assert created["coze_api_key"] == "****0001" and created["sync_on_delete"] is True
    listed = cli(env, "coze", "list", "--json").stdout
    assert COZE_SANDBOX_KEY not in listed and json.loads(listed)[0]["uuid"] == created["uuid"]

    synced = json.loads(
        cli(
            env,
            "coze",
            "sync",
            created["uuid"],
            "--inline",
            "--where",
            '[["current_quantity", ">=", 20]]',
            "--json",
        ).stdout
    )
    expected = sum(1 for i in range(12) if i * 7 % 300 >= 20)
    assert synced["status"] == "done" and synced["records_synced"] == synced["total_records"] == expected
    calls = state.coze.delivered()
    assert len(calls) == expected and all(c["parameters"]["current_quantity"] >= 20 for c in calls)
    assert all(isinstance(c["parameters"]["unit_price"], str) and "user_id" in c["parameters"] for c in calls)

    status = json.loads(cli(env, "coze", "status", "--json").stdout)
    assert status["templates"][0]["delivered"] == expected and status["templates"][0]["status"] == "ACTIVE"
    assert len(status["recent_deliveries"]) == min(10, expected)

    for args, named in (
        (("coze", "create", "--title", "x", "--table", "nope", "--workflow", "w"), "'nope'"),
        (("coze", "preview", "customers", "--fields", "customer_name,evil"), "'evil'"),
        (("coze", "sync", created["uuid"], "--where", '[["x; drop", "=", 1]]'), "'x; drop'"),
        (("coze", "show", "no-such-uuid"), "no-such-uuid"),
    ):
        done = cli(env, *args, check=False)
        assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr, done.stderr
