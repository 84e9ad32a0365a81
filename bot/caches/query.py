"""Pure query logic over cached bitable records: filters and plain-text cell values. No I/O.

Records keep Feishu's value shapes (lists of options, person objects, link objects, …);
`cell_text` renders any of them the way a person reads the cell, and `--where FIELD=VALUE`
matches against that text (for list-valued cells: any element).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DATE_TYPES = {5, 1001, 1002}


class QueryError(ValueError):
    """A filter that names an unknown field or is malformed; the message names the problem."""


@dataclass(frozen=True)
class Condition:
    field: str
    value: str


def parse_where(items: Iterable[str], known_fields: Sequence[str]) -> list[Condition]:
    conditions = []
    for item in items:
        if "=" not in item:
            raise QueryError(f"filter {item!r}: use FIELD=VALUE")
        name, value = item.split("=", 1)
        name = name.strip()
        if name not in known_fields:
            raise QueryError(f"unknown field {name!r}; fields are: {', '.join(known_fields)}")
        conditions.append(Condition(name, value.strip()))
    return conditions


def _parts(value: Any, field_type: int | None) -> list[str]:
    """The readable pieces of one cell."""
    if value is None:
        return []
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int | float) and field_type in DATE_TYPES:
        return [datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")]
    if isinstance(value, float) and value.is_integer():
        return [str(int(value))]
    if isinstance(value, int | float | str):
        return [str(value)]
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            out += _parts(item, field_type)
        return out
    if isinstance(value, dict):
        for key in ("text", "name", "link", "en_name", "id", "file_token"):
            if value.get(key):
                return [str(value[key])]
        if "link_record_ids" in value:
            return [str(v) for v in value["link_record_ids"]]
        return [json.dumps(value, ensure_ascii=False)]
    return [str(value)]


def cell_text(value: Any, field_type: int | None = None) -> str:
    return ", ".join(_parts(value, field_type))


def matches(fields: dict[str, Any], types: dict[str, int], conditions: Sequence[Condition]) -> bool:
    for condition in conditions:
        parts = _parts(fields.get(condition.field), types.get(condition.field))
        if condition.value == "":
            if parts:
                return False
        elif condition.value not in parts and condition.value != ", ".join(parts):
            return False
    return True
