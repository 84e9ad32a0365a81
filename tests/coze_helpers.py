"""Shared set-up for the Coze sync tests: the seed's demo tables and template specs."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, insert, select, update

from bot.coze.spec import TemplateCreate
from bot.models import CozeOutbox
from sandbox.coze import COZE_SANDBOX_KEY
from sandbox.demo_tables import CUSTOMERS

CUSTOMER_FIELDS = [
    "uuid",
    "customer_name",
    "customer_code",
    "phone",
    "email",
    "balance",
    "is_active",
    "updated_at",
]


def customer_spec(base_url: str, **overrides) -> TemplateCreate:
    values = {
        "table_name": "customers",
        "config_title": "客户数据同步",
        "coze_workflow_id": "customer_sync_workflow",
        "coze_api_url": base_url,
        "coze_api_key": COZE_SANDBOX_KEY,
        "selected_fields": CUSTOMER_FIELDS,
        "sync_on_insert": True,
        "sync_on_update": True,
        "sync_on_delete": True,
    }
    values.update(overrides)
    return TemplateCreate.model_validate(values)


def outbox_rows(services) -> list[dict]:
    with services.sessions() as session:
        rows = session.scalars(select(CozeOutbox).order_by(CozeOutbox.id)).all()
    return [
        {
            "op": r.op,
            "row_key": r.row_key,
            "old": json.loads(r.old_values) if r.old_values else None,
            "new": json.loads(r.new_values) if r.new_values else None,
            "status": r.status,
            "template_id": r.template_id,
        }
        for r in rows
    ]


SELECTED = set(CUSTOMER_FIELDS)


class Workload:
    """Random inserts, updates (some touching only an unselected column) and deletes, with the
    events Coze must receive for each row, in order."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rows: dict[int, dict] = {}
        self.next_id = 1
        self.expected: dict[str, list[tuple[str, dict]]] = defaultdict(list)
        self.serial = 0

    def _value(self) -> int:
        self.serial += 1
        return self.serial

    def step(self, connection) -> None:
        choice = self.rng.random()
        if not self.rows or choice < 0.35:
            i = self.next_id
            self.next_id += 1
            row = {
                "id": i,
                "uuid": f"00000000-0000-4000-8000-{i:012d}",
                "customer_name": f"客户{i}",
                "customer_code": f"C{i:05d}",
                "phone": f"138{i:08d}",
                "email": f"c{i}@example.com",
                "address": "上海",
                "balance": Decimal(self.rng.randrange(0, 10**6)) / 100,
                "is_active": self.rng.random() < 0.8,
                "updated_at": datetime(2024, 1, 1) + timedelta(seconds=self._value()),
            }
            connection.execute(insert(CUSTOMERS), [row])
            self.rows[i] = row
            self.expected[row["uuid"]].append(("insert", self._sent(row)))
        elif choice < 0.85:
            i = self.rng.choice(list(self.rows))
            field = self.rng.choice(
                ["phone", "customer_name", "balance", "is_active", "updated_at", "address"]
            )
            value = {
                "phone": f"139{self._value():08d}",
                "customer_name": f"客户{i}-{self._value()}",
                "balance": Decimal(self.rng.randrange(0, 10**6)) / 100,
                "is_active": not self.rows[i]["is_active"],
                "updated_at": self.rows[i]["updated_at"] + timedelta(minutes=1),
                "address": f"地址{self._value()}",
            }[field]
            if field == "balance" and value == self.rows[i]["balance"]:
                value += Decimal("0.01")
            connection.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == i).values({field: value}))
            self.rows[i] = {**self.rows[i], field: value}
            if field in SELECTED:
                self.expected[self.rows[i]["uuid"]].append(("update", self._sent(self.rows[i])))
        else:
            i = self.rng.choice(list(self.rows))
            connection.execute(delete(CUSTOMERS).where(CUSTOMERS.c.id == i))
            row = self.rows.pop(i)
            self.expected[row["uuid"]].append(("delete", self._sent(row)))

    @staticmethod
    def _sent(row: dict) -> dict:
        return {("user_id" if k == "uuid" else k): v for k, v in row.items() if k in SELECTED}


def normalise(parameters: dict) -> tuple[str, dict]:
    """Exact types as the seed's rules send them, then comparable values."""
    values = dict(parameters)
    op = values.pop("sync_operation")
    assert isinstance(values["balance"], str) and isinstance(values["updated_at"], str), values
    assert "T" in values["updated_at"] and isinstance(values["is_active"], bool), values
    assert "uuid" not in values
    values["balance"] = Decimal(values["balance"])
    values["updated_at"] = datetime.fromisoformat(values["updated_at"])
    return op, values
