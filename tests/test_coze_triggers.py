"""Templates install real triggers: each change of a synced table writes its outbox row in the
same transaction, only for the enabled operations and selected fields — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import delete, insert, update

from bot.coze import templates
from bot.coze.spec import TemplateFields
from bot.coze.triggers import installed_triggers
from sandbox.demo_tables import CUSTOMERS, create_demo_tables
from tests.coze_helpers import customer_spec, outbox_rows


@pytest.fixture
def demo(services):
    create_demo_tables(services.engine)
    return services


def _customer(i: int) -> dict:
    return {
        "id": i,
        "uuid": f"00000000-0000-0000-0000-{i:012d}",
        "customer_name": f"客户{i}",
        "customer_code": f"C{i:03d}",
        "phone": "13800138000",
        "email": f"c{i}@example.com",
        "address": "上海",
        "balance": Decimal("12.50"),
        "is_active": True,
        "updated_at": datetime(2024, 1, 15, 10, 0, 0),
    }


def test_changes_write_outbox_rows_in_the_same_transaction(demo, sandbox):
    base_url, _ = sandbox
    template = templates.create(demo, customer_spec(base_url, sync_on_delete=False))
    engine = demo.engine
    with demo.sessions() as session:
        assert installed_triggers(session.connection(), template.id) == [
            f"coze_sync_{template.id}_insert",
            f"coze_sync_{template.id}_update",
        ]
    with engine.begin() as connection:
        connection.execute(insert(CUSTOMERS), [_customer(1), _customer(2)])
    with engine.begin() as connection:  # only an unselected column: nothing to send
        connection.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == 1).values(address="北京"))
    with engine.begin() as connection:
        connection.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == 2).values(phone="13900000000"))
    with pytest.raises(RuntimeError), engine.begin() as connection:  # rolled back: no outbox row either
        connection.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == 1).values(phone="000"))
        raise RuntimeError("abort")
    with engine.begin() as connection:  # deletes are not enabled
        connection.execute(delete(CUSTOMERS).where(CUSTOMERS.c.id == 1))
    rows = outbox_rows(demo)
    assert [(r["op"], r["row_key"]) for r in rows] == [("insert", "1"), ("insert", "2"), ("update", "2")]
    assert set(rows[0]["new"]) == {
        "uuid",
        "customer_name",
        "customer_code",
        "phone",
        "email",
        "balance",
        "is_active",
        "updated_at",
    }
    assert rows[0]["old"] is None and rows[0]["new"]["customer_name"] == "客户1"
    assert rows[2]["old"]["phone"] == "13800138000" and rows[2]["new"]["phone"] == "13900000000"
    assert all(r["status"] == "pending" for r in rows)


def test_update_disable_and_delete_replace_the_triggers(demo, sandbox):
    base_url, _ = sandbox
    template = templates.create(demo, customer_spec(base_url))
    with demo.engine.begin() as connection:
        connection.execute(insert(CUSTOMERS), [_customer(1)])
    templates.update(
        demo, template.uuid, TemplateFields(selected_fields=["customer_name"], sync_on_insert=False)
    )
    with demo.engine.begin() as connection:
        connection.execute(insert(CUSTOMERS), [_customer(2)])
        connection.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == 1).values(phone="1"))  # not selected now
        connection.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == 1).values(customer_name="新名字"))
        connection.execute(delete(CUSTOMERS).where(CUSTOMERS.c.id == 2))
    rows = outbox_rows(demo)
    assert [(r["op"], r["row_key"]) for r in rows] == [("insert", "1"), ("update", "1"), ("delete", "2")]
    assert rows[1]["new"] == {"customer_name": "新名字"} and rows[2]["old"] == {"customer_name": "客户2"}

    templates.update(demo, template.uuid, TemplateFields(enabled=False))
    with demo.sessions() as session:
        assert installed_triggers(session.connection(), template.id) == []
    with demo.engine.begin() as connection:
        connection.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == 1).values(customer_name="停用时的修改"))
    assert len(outbox_rows(demo)) == 3

    templates.update(demo, template.uuid, TemplateFields(enabled=True))
    with demo.sessions() as session:
        assert len(installed_triggers(session.connection(), template.id)) == 2  # update + delete
    templates.delete(demo, template.uuid)
    with demo.sessions() as session:
        assert installed_triggers(session.connection(), template.id) == []
    assert outbox_rows(demo) == []  # its undelivered rows went with it
    with demo.engine.begin() as connection:
        connection.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == 1).values(customer_name="删除后"))
    assert outbox_rows(demo) == []


def test_postgresql_notify_wakes_the_dispatcher_only_on_commit(demo, sandbox):
    if demo.engine.dialect.name != "postgresql":
        pytest.skip("SQLite triggers cannot notify; the cron polls instead")
    import threading

    from bot.coze.listener import start_listener

    base_url, _ = sandbox
    templates.create(demo, customer_spec(base_url))
    woken = threading.Event()
    stop = start_listener(demo.settings.effective_database_url, woken.set)
    try:
        for i in range(1, 20):  # the listener connects in the background: write until it hears
            with demo.engine.begin() as connection:
                connection.execute(insert(CUSTOMERS), [_customer(i)])
            if woken.wait(0.5):
                break
        assert woken.is_set()
        woken.clear()
        with pytest.raises(RuntimeError), demo.engine.begin() as connection:
            connection.execute(insert(CUSTOMERS), [_customer(100)])
            raise RuntimeError("rolled back: no NOTIFY")
        assert not woken.wait(1.5)
    finally:
        stop.set()
