"""From an outbox row's stored values to a workflow's parameters, by the seed's rules:
`uuid` → `user_id`; datetime → ISO 8601; UUID and Decimal → string; the rest as they are;
then the template's renames or custom callable. Pure, so every rule is unit-tested."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from bot.coze.spec import FieldMapping

SEND_OLD_VALUES = {"delete"}


def load_values(text: str | None) -> dict[str, Any]:
    """Decimals stay exact: PostgreSQL's numeric arrives as a JSON number."""
    return json.loads(text, parse_float=Decimal) if text else {}


def plain(value: Any) -> Any:
    """A Python value (from a manual sync's SELECT) as the outbox stores it."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        raise TypeError("binary values are not sent to Coze")
    return value


def dump_values(row: dict[str, Any]) -> str:
    return json.dumps({k: plain(v) for k, v in row.items()}, ensure_ascii=False)


def convert(value: Any, kind: str) -> Any:
    if value is None:
        return None
    match kind:
        case "datetime":
            parsed = value if isinstance(value, datetime) else _parse_datetime(value)
            return parsed.isoformat() if parsed else value
        case "date":
            return value.isoformat() if isinstance(value, date) else str(value)[:10]
        case "uuid" | "decimal":
            return str(value)
        case "boolean":
            return bool(value) if isinstance(value, int | bool) else value
        case "integer":
            return int(value) if isinstance(value, Decimal) else value
        case "float":
            return float(value) if isinstance(value, Decimal) else value
        case "json":
            if isinstance(value, str):
                try:
                    return json.loads(value)
                except ValueError:
                    return value
            return value
    return value


def _parse_datetime(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def record_for(op: str, old: dict[str, Any], new: dict[str, Any], kinds: dict[str, str]) -> dict[str, Any]:
    """The row as the workflow should see it: after the change, or before a delete."""
    values = old if op in SEND_OLD_VALUES else new
    return {name: convert(value, kinds.get(name, "string")) for name, value in values.items()}


def to_parameters(
    op: str,
    record: dict[str, Any],
    mapping: FieldMapping | None,
    custom: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    mapping = mapping or FieldMapping()
    if custom is not None:
        parameters = dict(custom(dict(record)))
    else:
        parameters = {}
        for name, value in record.items():
            target = mapping.rename.get(name) or ("user_id" if name == "uuid" else name)
            parameters[target] = value
    if mapping.operation_field:
        parameters[mapping.operation_field] = op
    return parameters
