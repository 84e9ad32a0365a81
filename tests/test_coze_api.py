"""The Coze sync template REST API as the seed documents it: the customers/products/suppliers
examples, preview, manual sync, 422s naming unknown tables and fields, injection attempts that
change nothing, error classification into the template's status, dead letters and re-drive."""

from __future__ import annotations

import json

import pytest
from rq import SimpleWorker
from sqlalchemy import func, inspect, select

from bot.coze import outbox
from bot.coze.dispatch import drain
from bot.models import CozeDelivery, CozeTemplate
from bot.queue import QueueName
from sandbox.coze import COZE_SANDBOX_KEY
from sandbox.demo_tables import CUSTOMERS, SUPPLIERS, create_demo_tables

BASE = "/api/v1/coze-sync-templates"
AUTH = {"Authorization": "Bearer admin-token-for-tests-0001-0123456789abcdef"}


@pytest.fixture
def api(client, services, sandbox):
    create_demo_tables(services.engine, rows=30)
    base_url, state = sandbox
    return client, services, base_url, state


def _run_jobs(services) -> None:
    """A real RQ worker (in this process, on the real Redis) until the queue is empty."""
    SimpleWorker([services.queues[QueueName.COZE]], connection=services.redis).work(burst=True)


def _create(client, base_url, **body):
    payload = {"coze_api_url": base_url, "coze_api_key": COZE_SANDBOX_KEY, **body}
    return client.post(f"{BASE}/", json=payload, headers=AUTH)


def test_seed_examples_work_through_the_api(api):
    client, services, base_url, state = api
    customers = _create(
        client,
        base_url,
        table_name="customers",
        config_title="客户信息同步",
        coze_workflow_id="customer_sync_workflow",
        selected_fields=["customer_name", "customer_code", "phone", "email", "address"],
    )
    assert customers.status_code == 201, customers.json
    body = customers.json
    assert body["success"] is True and body["message"] == "同步模板创建成功"
    config = body["config"]
    assert {"uuid", "config_title", "table_name", "coze_workflow_id", "selected_fields", "enabled"} <= set(
        config
    )
    assert config["enabled"] is True and config["coze_api_key"] == "****0001"
    assert config["selected_fields"] == ["customer_name", "customer_code", "phone", "email", "address"]
    products = _create(
        client,
        base_url,
        table_name="products",
        config_title="产品信息同步",
        coze_workflow_id="product_sync_workflow",
        selected_fields=["product_name", "product_code", "unit_price", "current_quantity"],
    )
    suppliers = _create(
        client,
        base_url,
        table_name="suppliers",
        config_title="供应商同步",
        coze_workflow_id="supplier_sync_workflow",
    )  # no selection: every column
    assert products.status_code == suppliers.status_code == 201
    assert suppliers.json["config"]["selected_fields"] == [
        "id",
        "uuid",
        "supplier_name",
        "supplier_code",
        "contact",
        "is_active",
    ]

    listed = client.get(f"{BASE}/", headers=AUTH).json
    assert [t["table_name"] for t in listed] == ["customers", "products", "suppliers"]
    seed_keys = {
        "uuid",
        "config_title",
        "table_name",
        "coze_workflow_id",
        "sync_on_insert",
        "sync_on_update",
        "sync_on_delete",
        "selected_fields",
        "status",
        "last_sync_time",
        "created_at",
    }
    assert all(seed_keys <= set(t) and t["status"] == "ACTIVE" for t in listed)
    assert (listed[0]["sync_on_insert"], listed[0]["sync_on_update"], listed[0]["sync_on_delete"]) == (
        True,
        True,
        False,
    )

    preview = client.get(
        f"{BASE}/preview",
        query_string={"table_name": "customers", "selected_fields": "customer_name,customer_code"},
        headers=AUTH,
    ).json
    assert preview["success"] and preview["table_name"] == "customers"
    assert preview["table_display_name"] in ("客户表", "customers")
    assert {"name": "customer_name", "type": "string"}.items() <= preview["available_fields"][2].items()
    kinds = {f["name"]: f["type"] for f in preview["available_fields"]}
    assert (
        kinds["balance"] == "decimal"
        and kinds["updated_at"] == "datetime"
        and kinds["is_active"] == "boolean"
    )
    assert preview["selected_fields"] == ["customer_name", "customer_code"]
    assert preview["sample_data"][0] == {"customer_name": "客户0001", "customer_code": "C0001"}
    assert preview["sample_size"] == len(preview["sample_data"]) == 5

    # manual sync of the suppliers (seed example 3: batch_size 50), then only the active ones
    uuid = suppliers.json["config"]["uuid"]
    started = client.post(f"{BASE}/{uuid}/manual-sync?wait=0", json={"batch_size": 50}, headers=AUTH)
    assert started.status_code == 202 and started.json["success"] is True
    _run_jobs(services)
    done = client.get(started.json["status_url"], headers=AUTH).json
    assert done == {
        **done,
        "success": True,
        "records_synced": 30,
        "total_records": 30,
        "message": "同步完成，成功同步 30 条记录",
    }
    calls = [c for c in state.coze.delivered() if c["workflow_id"] == "supplier_sync_workflow"]
    first = next(c for c in calls if c["parameters"]["id"] == 1)  # rows go in parallel: any arrival order
    assert len(calls) == 30 and first["parameters"] == {
        "id": 1,
        "user_id": "00000000-0000-0000-0000-0000001e8480",  # uuid.UUID(int=2 * 10**6)
        "supplier_name": "供应商001",
        "supplier_code": "S001",
        "contact": "联系人1",
        "is_active": False,
    }
    active = client.post(
        f"{BASE}/{uuid}/manual-sync?wait=0",
        json={"batch_size": 7, "filters": {"is_active": True}},
        headers=AUTH,
    )
    _run_jobs(services)
    done = client.get(active.json["status_url"], headers=AUTH).json
    assert done["records_synced"] == done["total_records"] == 20
    listed = {t["uuid"]: t for t in client.get(f"{BASE}/", headers=AUTH).json}
    assert listed[uuid]["last_sync_time"] is not None

    # update (the seed's `updates` body) and delete
    changed = client.put(
        f"{BASE}/{uuid}",
        json={"updates": {"config_title": "供应商同步（新）", "sync_on_delete": True}},
        headers=AUTH,
    )
    assert changed.status_code == 200 and changed.json["config"]["sync_on_delete"] is True
    assert client.delete(f"{BASE}/{uuid}", headers=AUTH).json["success"] is True
    assert client.get(f"{BASE}/{uuid}", headers=AUTH).status_code == 404
    everything = json.dumps([client.get(f"{BASE}/", headers=AUTH).json, customers.json, products.json])
    assert COZE_SANDBOX_KEY not in everything


def test_the_seed_mapping_rules_reach_coze(api):
    """uuid → user_id, datetime → ISO 8601, Decimal → string, the rest as they are."""
    client, services, base_url, state = api
    made = _create(
        client,
        base_url,
        table_name="customers",
        config_title="客户",
        coze_workflow_id="workflow_123",
        selected_fields=["uuid", "customer_name", "balance", "is_active", "updated_at"],
    )
    uuid = made.json["config"]["uuid"]
    client.post(f"{BASE}/{uuid}/manual-sync?wait=0", json={"filters": [["id", "=", 2]]}, headers=AUTH)
    _run_jobs(services)
    [call] = state.coze.delivered()
    assert call["parameters"] == {
        "user_id": "00000000-0000-0000-0000-000000000002",
        "customer_name": "客户0002",
        "balance": call["parameters"]["balance"],
        "is_active": True,
        "updated_at": "2024-01-15T11:00:00",
    }
    assert call["parameters"]["balance"] in ("9.25", "9.2500", "9.25000")


def test_custom_mapping_callable_and_operation_field(api):
    client, services, base_url, state = api
    made = _create(
        client,
        base_url,
        table_name="customers",
        config_title="客户",
        coze_workflow_id="workflow_123",
        selected_fields=["customer_name", "customer_code"],
        field_mapping={"callable": "bot.coze.examples:customer_name_code", "operation_field": "op"},
    )
    assert made.status_code == 201, made.json
    with services.engine.begin() as connection:
        connection.execute(CUSTOMERS.update().where(CUSTOMERS.c.id == 3).values(customer_name="王五"))
    drain(services, budget=10)
    assert [c["parameters"] for c in state.coze.delivered()] == [
        {"name": "王五", "code": "C0003", "op": "update"}
    ]
    refused = _create(
        client,
        base_url,
        table_name="customers",
        config_title="x",
        coze_workflow_id="workflow_123",
        field_mapping={"callable": "os:system"},
    )
    assert refused.status_code == 422 and "COZE_MAPPING_MODULES" in refused.json["message"]


INJECTIONS = [
    ("table_name", {"table_name": "customers; DROP TABLE customers; --"}),
    ("table_name", {"table_name": 'customers" --'}),
    ("table_name", {"table_name": "coze_outbox"}),
    ("table_name", {"table_name": "no_such_table"}),
    (
        "selected_fields",
        {"table_name": "customers", "selected_fields": ["customer_name); DROP TABLE customers; --"]},
    ),
    ("selected_fields", {"table_name": "customers", "selected_fields": ["customer_name", "no_such_field"]}),
    ("selected_fields", {"table_name": "customers", "selected_fields": ["1 OR 1=1"]}),
]


@pytest.mark.parametrize(("field", "body"), INJECTIONS)
def test_unknown_or_hostile_names_are_422_and_change_nothing(api, field, body):
    client, services, base_url, _ = api
    before = _database_shape(services)
    answer = _create(client, base_url, config_title="x", coze_workflow_id="workflow_123", **body)
    assert answer.status_code == 422, answer.json
    assert answer.json["success"] is False and answer.json["errors"][0]["field"] == field
    named = body.get("selected_fields", [body["table_name"]])[-1]
    assert repr(named) in answer.json["message"] or "sync machinery" in answer.json["message"]
    assert _database_shape(services) == before


def test_hostile_filters_and_preview_are_422_and_change_nothing(api):
    client, services, base_url, state = api
    uuid = _create(
        client, base_url, table_name="customers", config_title="x", coze_workflow_id="workflow_123"
    ).json["config"]["uuid"]
    before = _database_shape(services)
    hostile = [
        [["is_active", "= 1 OR 1=1; --", 1]],
        [["customer_name = '' OR 1=1 --", "=", "x"]],
        {"customer_name; DROP TABLE customers": "x"},
        [["customer_name", "in", "not-a-list"]],
        "DROP TABLE customers",
    ]
    for filters in hostile:
        answer = client.post(f"{BASE}/{uuid}/manual-sync?wait=0", json={"filters": filters}, headers=AUTH)
        assert answer.status_code == 422 and answer.json["errors"][0]["field"] == "filters", (
            filters,
            answer.json,
        )
    bad_batch = client.post(f"{BASE}/{uuid}/manual-sync?wait=0", json={"batch_size": "100; --"}, headers=AUTH)
    assert bad_batch.status_code == 422 and bad_batch.json["errors"][0]["field"] == "batch_size"
    for query in (
        {"table_name": "customers; DROP TABLE customers"},
        {"table_name": "customers", "selected_fields": "customer_name,(SELECT 1)"},
    ):
        assert client.get(f"{BASE}/preview", query_string=query, headers=AUTH).status_code == 422
    # a hostile *value* is only ever a bound parameter: it matches nothing and harms nothing
    value = client.post(
        f"{BASE}/{uuid}/manual-sync?wait=0",
        json={"filters": [["customer_name", "=", "' OR '1'='1"]]},
        headers=AUTH,
    )
    _run_jobs(services)
    assert client.get(value.json["status_url"], headers=AUTH).json["total_records"] == 0
    assert state.coze.delivered() == []
    bad_update = client.put(
        f"{BASE}/{uuid}", json={"selected_fields": ["customer_name", "evil--"]}, headers=AUTH
    )
    assert bad_update.status_code == 422 and "'evil--'" in bad_update.json["message"]
    assert _database_shape(services) == before


def _database_shape(services) -> dict:
    """Tables, their row counts, triggers and templates: what an injection could have changed."""
    inspector = inspect(services.engine)
    with services.engine.connect() as connection:
        counts = {
            t: connection.scalar(select(func.count()).select_from(table))
            for t, table in (("customers", CUSTOMERS), ("suppliers", SUPPLIERS))
        }
        if connection.dialect.name == "sqlite":
            triggers = sorted(
                r[0]
                for r in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            )
        else:
            triggers = sorted(
                r[0]
                for r in connection.exec_driver_sql("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
            )
        templates = connection.scalar(select(func.count()).select_from(CozeTemplate))
    return {
        "tables": sorted(inspector.get_table_names()),
        "counts": counts,
        "triggers": triggers,
        "templates": templates,
    }


def test_bad_requests_get_clear_answers(api):
    client, _, base_url, _ = api
    assert client.post(f"{BASE}/", json={}).status_code == 401
    assert client.get(f"{BASE}/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    garbage = client.post(f"{BASE}/", data="{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert garbage.status_code == 400 and garbage.json["success"] is False
    missing = client.post(f"{BASE}/", json={"table_name": "customers"}, headers=AUTH)
    assert missing.status_code == 422 and {e["field"] for e in missing.json["errors"]} == {
        "config_title",
        "coze_workflow_id",
    }
    assert client.put(f"{BASE}/nope", json={"config_title": "x"}, headers=AUTH).status_code == 404
    assert client.delete(f"{BASE}/nope", headers=AUTH).status_code == 404
    assert client.post(f"{BASE}/nope/manual-sync", json={}, headers=AUTH).status_code == 404
    bad_url = _create(
        client,
        base_url,
        table_name="customers",
        config_title="x",
        coze_workflow_id="w",
        coze_api_url="ftp://x",
    )
    assert bad_url.status_code == 422 and bad_url.json["errors"][0]["field"] == "coze_api_url"


def test_openapi_document_lists_the_seed_routes(client):
    document = client.get("/openapi.json").json
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert {"post", "get"} <= set(paths[f"{BASE}/"])
    assert "get" in paths[f"{BASE}/preview"]
    assert {"put", "delete"} <= set(paths[f"{BASE}/{{config_uuid}}"])
    assert "post" in paths[f"{BASE}/{{config_uuid}}/manual-sync"]
    create = document["components"]["schemas"]["TemplateCreate"]
    assert set(create["required"]) == {"config_title", "table_name", "coze_workflow_id"}


def test_coze_errors_set_status_dead_letters_and_redrive(api):
    client, services, base_url, state = api
    services.settings.coze_max_attempts = 2
    services.settings.coze_backoff_seconds = 0.01
    services.settings.coze_backoff_max_seconds = 0.01
    missing = _create(
        client, base_url, table_name="products", config_title="p", coze_workflow_id="not_published"
    )
    wrong_key = _create(
        client,
        base_url,
        table_name="suppliers",
        config_title="s",
        coze_workflow_id="supplier_sync_workflow",
        coze_api_key="pat_wrong_key_000000",
    )
    for made in (missing, wrong_key):
        uuid = made.json["config"]["uuid"]
        client.post(f"{BASE}/{uuid}/manual-sync?wait=0", json={"filters": [["id", "<=", 3]]}, headers=AUTH)
    _run_jobs(services)
    for _ in range(20):
        drain(services, budget=2)
        if outbox.counts(services.engine)["pending"] == 0:
            break
    listed = {t["table_name"]: t for t in client.get(f"{BASE}/", headers=AUTH).json}
    assert listed["products"]["status"] == "WORKFLOW_NOT_FOUND"
    assert listed["suppliers"]["status"] == "AUTH_ERROR" and "4100" in listed["suppliers"]["status_detail"]
    assert outbox.counts(services.engine)["dead"] == 6
    with services.sessions() as session:
        logids = list(session.scalars(select(CozeDelivery.logid).where(CozeDelivery.ok.is_(False))))
    assert len(logids) == 12 and all(logids)
    # fix the key, re-drive the dead letters: delivered once each, in order
    uuid = wrong_key.json["config"]["uuid"]
    assert (
        client.put(f"{BASE}/{uuid}", json={"coze_api_key": COZE_SANDBOX_KEY}, headers=AUTH).status_code == 200
    )
    assert client.post(f"{BASE}/{uuid}/redrive", headers=AUTH).json["redriven"] == 3
    drain(services, budget=10)
    calls = [c for c in state.coze.delivered() if c["workflow_id"] == "supplier_sync_workflow"]
    assert sorted(c["parameters"]["id"] for c in calls) == [1, 2, 3]  # once each
    shown = client.get(f"{BASE}/{uuid}", headers=AUTH).json
    assert shown["config"]["status"] == "ACTIVE" and shown["outbox"]["delivered"] == 3
