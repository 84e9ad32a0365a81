"""Pure Coze-sync logic: the seed's field mapping rules, filter parsing, template validation,
error classification, backoff, trigger DDL."""

from __future__ import annotations

import random
from datetime import datetime
from decimal import Decimal

import pytest

from bot.coze import mapping
from bot.coze.client import ErrorKind, classify
from bot.coze.filters import Filter, parse_filters
from bot.coze.outbox import backoff_seconds
from bot.coze.schema_info import TableInfo
from bot.coze.spec import FieldMapping, SpecError, TemplateCreate, validate
from bot.coze.triggers import TriggerPlan, sqlite_ddl

CUSTOMERS = TableInfo(
    name="customers",
    columns={
        "id": "integer",
        "uuid": "string",
        "customer_name": "string",
        "balance": "decimal",
        "is_active": "boolean",
        "updated_at": "datetime",
        "photo": "bytes",
    },
    types={},
    primary_key=("id",),
)
PREFIXES = ["bot.coze.examples"]


def test_seed_mapping_example():
    """The seed's own example: the database record becomes exactly these parameters."""
    record = mapping.record_for(
        "insert",
        {},
        {
            "uuid": "123e4567-e89b-12d3-a456-426614174000",
            "customer_name": "张三",
            "customer_code": "C001",
            "phone": "13800138000",
            "created_at": "2024-01-15T10:00:00+00:00",
        },
        {
            "uuid": "uuid",
            "customer_name": "string",
            "customer_code": "string",
            "phone": "string",
            "created_at": "datetime",
        },
    )
    assert mapping.to_parameters("insert", record, None) == {
        "user_id": "123e4567-e89b-12d3-a456-426614174000",
        "customer_name": "张三",
        "customer_code": "C001",
        "phone": "13800138000",
        "created_at": "2024-01-15T10:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("value", "kind", "sent"),
    [
        ("2024-01-15 10:00:00.000000", "datetime", "2024-01-15T10:00:00"),  # SQLite's storage form
        ("2024-01-15 10:00:00.123", "datetime", "2024-01-15T10:00:00.123000"),  # a trigger's strftime
        ("2024-01-15T10:00:00", "datetime", "2024-01-15T10:00:00"),  # PostgreSQL's to_jsonb form
        (Decimal("12.50"), "decimal", "12.50"),
        (12.5, "decimal", "12.5"),
        (3, "decimal", "3"),
        (1, "boolean", True),
        (0, "boolean", False),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", "uuid", "0f8fad5b-d9cb-469f-a165-70867728950e"),
        ('{"a": 1}', "json", {"a": 1}),
        (Decimal("7"), "integer", 7),
        (None, "datetime", None),
        ("not a date", "datetime", "not a date"),
    ],
)
def test_conversions(value, kind, sent):
    assert mapping.convert(value, kind) == sent


def test_plain_values_round_trip_exactly():
    import uuid

    row = {"at": datetime(2024, 1, 15, 10, 0), "money": Decimal("12.50"), "id": uuid.UUID(int=5), "n": None}
    stored = mapping.load_values(mapping.dump_values(row))
    assert stored == {"at": "2024-01-15T10:00:00", "money": "12.50", "id": str(uuid.UUID(int=5)), "n": None}


def test_deletes_send_the_old_values_and_renames_apply():
    old, new = {"uuid": "u1", "customer_name": "旧"}, {}
    record = mapping.record_for("delete", old, new, {"uuid": "string", "customer_name": "string"})
    rename = FieldMapping(rename={"customer_name": "name"}, operation_field="op")
    assert mapping.to_parameters("delete", record, rename) == {"user_id": "u1", "name": "旧", "op": "delete"}
    explicit = FieldMapping(rename={"uuid": "id"})
    assert mapping.to_parameters("insert", {"uuid": "u1"}, explicit) == {"id": "u1"}


def test_custom_callable_replaces_the_default_mapping():
    from bot.coze.examples import customer_name_code

    record = {"customer_name": "张三", "customer_code": "C001", "phone": "1"}
    assert mapping.to_parameters("insert", record, None, customer_name_code) == {
        "name": "张三",
        "code": "C001",
    }


def test_filters_accept_the_seed_form_and_triples():
    columns = CUSTOMERS.columns
    assert parse_filters({"is_active": True}, columns) == [Filter("is_active", "=", True)]
    assert parse_filters(
        [
            ["balance", ">=", 10],
            {"column": "id", "operator": "in", "value": [1, 2]},
            ["customer_name", "is_null"],
        ],
        columns,
    ) == [Filter("balance", ">=", 10), Filter("id", "in", [1, 2]), Filter("customer_name", "is null", None)]
    assert parse_filters(None, columns) == [] and parse_filters({}, columns) == []


@pytest.mark.parametrize(
    "raw",
    [
        {"is_active OR 1=1": True},
        [["id", "; DROP TABLE customers", 1]],
        [["id", "=", {"$gt": 1}]],
        [["id", "in", "1,2"]],
        [["id"]],
        "id = 1",
        [42],
    ],
)
def test_bad_filters_are_named(raw):
    with pytest.raises(SpecError) as caught:
        parse_filters(raw, CUSTOMERS.columns)
    assert all(p.field == "filters" for p in caught.value.problems)


def test_validation_names_unknown_tables_and_fields():
    spec = TemplateCreate(
        table_name="customers",
        config_title="t",
        coze_workflow_id="w",
        selected_fields=["customer_name", "nope", "photo"],
    )
    with pytest.raises(SpecError) as caught:
        validate(spec, "customers", CUSTOMERS, PREFIXES)
    messages = [p.message for p in caught.value.problems]
    assert "field 'nope' does not exist in table 'customers'" in messages
    assert any("'photo' is binary" in m for m in messages)
    with pytest.raises(SpecError, match="table 'customerz' does not exist"):
        validate(spec, "customerz", None, PREFIXES)
    with pytest.raises(SpecError, match="no primary key"):
        validate(spec, "customers", TableInfo("customers", CUSTOMERS.columns, {}, ()), PREFIXES)
    everything = validate(
        TemplateCreate(table_name="customers", config_title="t", coze_workflow_id="w"),
        "customers",
        CUSTOMERS,
        PREFIXES,
    )
    assert everything == ["id", "uuid", "customer_name", "balance", "is_active", "updated_at"]  # no binary


def test_mapping_callables_must_come_from_allowed_modules():
    base = {"table_name": "customers", "config_title": "t", "coze_workflow_id": "w"}
    ok = TemplateCreate(**base, field_mapping={"callable": "bot.coze.examples:customer_name_code"})
    assert validate(ok, "customers", CUSTOMERS, PREFIXES)
    for path, reason in (("os:system", "outside"), ("bot.coze.examples:missing", "cannot be loaded")):
        with pytest.raises(SpecError, match=reason):
            validate(
                TemplateCreate(**base, field_mapping={"callable": path}), "customers", CUSTOMERS, PREFIXES
            )
    with pytest.raises(SpecError, match="not a selected field"):
        validate(
            TemplateCreate(**base, selected_fields=["id"], field_mapping={"rename": {"uuid": "x"}}),
            "customers",
            CUSTOMERS,
            PREFIXES,
        )


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (4100, ErrorKind.AUTH),
        (4101, ErrorKind.AUTH),
        (4200, ErrorKind.NOT_FOUND),
        (4009, ErrorKind.RATE_LIMITED),
        (4020, ErrorKind.RATE_LIMITED),
        (4000, ErrorKind.BAD_REQUEST),
        (4008, ErrorKind.QUOTA),
        (5000, ErrorKind.SERVER),
        (502, ErrorKind.SERVER),
        (None, ErrorKind.SERVER),
    ],
)
def test_coze_codes_are_classified(code, kind):
    assert classify(code) == kind


def test_backoff_doubles_with_jitter_up_to_the_cap():
    rng = random.Random(1)
    waits = [backoff_seconds(n, 2.0, 60.0, rng) for n in range(1, 10)]
    assert 1.0 <= waits[0] <= 2.0 and 8.0 <= waits[3] <= 16.0
    assert all(30.0 <= w <= 60.0 for w in waits[5:])


def test_trigger_ddl_refuses_anything_but_plain_identifiers():
    for bad in ('customers"; DROP TABLE x; --', "a b", "1abc", ""):
        with pytest.raises(ValueError):
            TriggerPlan(1, bad, ("id",), ("name",), ("insert",))
        with pytest.raises(ValueError):
            TriggerPlan(1, "customers", ("id",), (bad,), ("insert",))
    plan = TriggerPlan(7, "customers", ("id",), ("customer_name", "balance"), ("update",))
    [ddl] = sqlite_ddl(plan, lambda name: f'"{name}"')
    assert ddl.startswith('CREATE TRIGGER coze_sync_7_update AFTER UPDATE ON "customers"')
    assert 'WHEN OLD."customer_name" IS NOT NEW."customer_name" OR OLD."balance" IS NOT NEW."balance"' in ddl
