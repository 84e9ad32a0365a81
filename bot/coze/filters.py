"""Manual-sync filters: column/operator/value triples (or the seed's `{"column": value}`),
validated against the table's columns and applied as bound parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Table

from bot.coze.spec import Problem, SpecError

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "in", "not in", "like", "is null", "is not null")
_ALIASES = {
    "eq": "=",
    "==": "=",
    "ne": "!=",
    "<>": "!=",
    "lt": "<",
    "le": "<=",
    "lte": "<=",
    "gt": ">",
    "ge": ">=",
    "gte": ">=",
    "not_in": "not in",
    "is_null": "is null",
    "is_not_null": "is not null",
}
_SCALAR = (str, int, float, bool)


@dataclass(frozen=True)
class Filter:
    column: str
    operator: str
    value: Any = None


def parse_filters(raw: Any, columns: dict[str, str]) -> list[Filter]:
    """Accept None, `{"col": value, …}` (equality) or `[[col, op, value], …]` /
    `[{"column", "operator", "value"}, …]`. Raise SpecError naming what is wrong."""
    if raw is None or raw == {} or raw == []:
        return []
    if isinstance(raw, dict):
        items = [(column, "=", value) for column, value in raw.items()]
    elif isinstance(raw, list):
        items = []
        for entry in raw:
            if isinstance(entry, dict):
                items.append((entry.get("column"), entry.get("operator", "="), entry.get("value")))
            elif isinstance(entry, list | tuple) and len(entry) in (2, 3):
                items.append((entry[0], entry[1], entry[2] if len(entry) == 3 else None))
            else:
                raise SpecError(
                    [Problem(field="filters", message=f"filter {entry!r} is not [column, operator, value]")]
                )
    else:
        raise SpecError([Problem(field="filters", message="filters must be an object or a list of triples")])
    filters, problems = [], []
    for column, operator, value in items:
        op = _ALIASES.get(str(operator).lower(), str(operator).lower()) if isinstance(operator, str) else None
        if not isinstance(column, str) or column not in columns:
            problems.append(Problem(field="filters", message=f"filter column {column!r} does not exist"))
            continue
        if op not in OPERATORS:
            problems.append(
                Problem(field="filters", message=f"filter operator {operator!r} is not one of {OPERATORS}")
            )
            continue
        if op in ("in", "not in"):
            if not isinstance(value, list) or not all(v is None or isinstance(v, _SCALAR) for v in value):
                problems.append(
                    Problem(field="filters", message=f"{op!r} on {column!r} needs a list of values")
                )
                continue
        elif op not in ("is null", "is not null") and not (value is None or isinstance(value, _SCALAR)):
            problems.append(Problem(field="filters", message=f"value for {column!r} must be a scalar"))
            continue
        filters.append(Filter(column, op, value))
    if problems:
        raise SpecError(problems)
    return filters


def apply_filters(query: Select, table: Table, filters: list[Filter]) -> Select:
    for f in filters:
        column = table.c[f.column]
        match f.operator:
            case "=":
                query = query.where(column.is_(None) if f.value is None else column == f.value)
            case "!=":
                query = query.where(column.is_not(None) if f.value is None else column != f.value)
            case "<":
                query = query.where(column < f.value)
            case "<=":
                query = query.where(column <= f.value)
            case ">":
                query = query.where(column > f.value)
            case ">=":
                query = query.where(column >= f.value)
            case "in":
                query = query.where(column.in_(f.value))
            case "not in":
                query = query.where(column.not_in(f.value))
            case "like":
                query = query.where(column.like(f.value))
            case "is null":
                query = query.where(column.is_(None))
            case "is not null":
                query = query.where(column.is_not(None))
    return query


def to_json(filters: list[Filter]) -> list[list[Any]]:
    return [[f.column, f.operator, f.value] for f in filters]
