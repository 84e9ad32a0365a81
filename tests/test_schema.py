"""schema.sql is the source of truth; the models must agree with it on both databases."""

from __future__ import annotations

from sqlalchemy import inspect, types

from bot.db import init_schema, make_engine, split_sections
from bot.models import Base

TYPE_FAMILIES = {
    types.Integer: "integer",
    types.String: "string",
    types.Text: "string",
    types.DateTime: "datetime",
    types.Date: "date",
    types.Boolean: "boolean",
    types.Float: "float",
}


def _family(sqltype) -> str:
    impl = getattr(sqltype, "impl", sqltype)
    impl = impl if isinstance(impl, types.TypeEngine) else impl()
    for cls, family in TYPE_FAMILIES.items():
        if isinstance(impl, cls):
            return family
    return type(impl).__name__


def test_schema_sections_are_named():
    from bot.db import schema_path

    sections = split_sections(schema_path().read_text())
    assert {"common", "dialect: postgresql", "dialect: sqlite"} <= set(sections)


def test_init_is_idempotent_and_models_match(database_url):
    engine = make_engine(database_url)
    try:
        first = init_schema(engine)
        init_schema(engine)  # second run changes nothing and does not fail
        assert first[0] == "common"
        inspector = inspect(engine)
        assert set(Base.metadata.tables) <= set(inspector.get_table_names())
        for name, table in Base.metadata.tables.items():
            reflected = {c["name"]: c for c in inspector.get_columns(name)}
            assert set(reflected) == {c.name for c in table.columns}, name
            for column in table.columns:
                got = reflected[column.name]
                assert _family(got["type"]) == _family(column.type), (name, column.name, got["type"])
                if not column.primary_key:
                    assert got["nullable"] == column.nullable, (name, column.name)
            pk = inspector.get_pk_constraint(name)["constrained_columns"]
            assert pk == [c.name for c in table.primary_key.columns], name
            uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)}
            model_uniques = {
                tuple(c.name for c in con.columns)
                for con in table.constraints
                if con.__class__.__name__ == "UniqueConstraint"
            }
            assert model_uniques <= uniques, name
            indexes = {i["name"] for i in inspector.get_indexes(name)}
            assert {i.name for i in table.indexes} <= indexes, name
    finally:
        engine.dispose()


def test_ids_autoincrement_on_both_databases(database_url):
    from bot.intake import receipts
    from bot.intake.parse import ParsedEvent

    engine = make_engine(database_url)
    try:
        init_schema(engine)
        ids = [receipts.record(engine, ParsedEvent(f"e{i}", "t", "2.0", {})) for i in range(3)]
        assert ids == sorted(ids) and len(set(ids)) == 3 and all(isinstance(i, int) for i in ids)
        assert receipts.record(engine, ParsedEvent("e0", "t", "2.0", {})) is None
    finally:
        engine.dispose()
