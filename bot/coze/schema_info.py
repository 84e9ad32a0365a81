"""What the live database says a table looks like: the only source table and field names are
checked against before they reach any SQL."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Engine, MetaData, Table, inspect, types

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# The bridge's own outbox machinery: a template on these would feed itself.
RESERVED_PREFIXES = ("coze_",)

_KINDS: list[tuple[type, str]] = [
    (types.Boolean, "boolean"),
    (types.DateTime, "datetime"),
    (types.Date, "date"),
    (types.Time, "time"),
    (types.Uuid, "uuid"),
    (types.Numeric, "decimal"),  # Float is a Numeric subclass: checked first below
    (types.Integer, "integer"),
    (types.JSON, "json"),
    (types.LargeBinary, "bytes"),
    (types.String, "string"),
]


def kind_of(sqltype: types.TypeEngine) -> str:
    """A column type reduced to what the field mapping needs to know."""
    if isinstance(sqltype, types.Float):
        return "float"
    for klass, kind in _KINDS:
        if isinstance(sqltype, klass):
            return kind
    name = type(sqltype).__name__.lower()
    if "json" in name:
        return "json"
    if "uuid" in name:
        return "uuid"
    return "string"


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: dict[str, str]  # name → kind, in table order
    types: dict[str, str]  # name → the database's type name, for previews
    primary_key: tuple[str, ...]


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


def describe(engine: Engine, name: str) -> TableInfo | None:
    """The table as the database has it now, or None if there is no such table. `name` is only
    compared with the names the inspector lists, never put into SQL."""
    inspector = inspect(engine)
    if name not in inspector.get_table_names():
        return None
    columns = inspector.get_columns(name)
    pk = inspector.get_pk_constraint(name).get("constrained_columns") or []
    return TableInfo(
        name=name,
        columns={c["name"]: kind_of(c["type"]) for c in columns},
        types={c["name"]: str(c["type"]) for c in columns},
        primary_key=tuple(pk),
    )


def reflect(engine: Engine, info: TableInfo) -> Table:
    """A SQLAlchemy Table for a described table, so queries are built, not spliced."""
    return Table(info.name, MetaData(), autoload_with=engine)
