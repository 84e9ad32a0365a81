"""Python values ↔ bitable cells (pure).

`to_cell` turns what a source gave (str, int, float, Decimal, date, datetime, bool …) into the
value a bitable write takes for the field's type; `from_read` turns what a read returns into
that same shape. Planning compares the two, so a value that round-trips unchanged is never
written again: re-running a day makes zero writes. The one shape per type:

* text (1), phone (13): a non-empty str, or None. Feishu reads text as a string or as segments
  `[{"type": "text", "text": …}]`; segments are joined. An empty string is no value: Feishu
  keeps none.
* number (2): int when integral, else float (Decimal and numeric strings accepted); reads are
  floats.
* single select (3): the option's text; multi select (4): a list of texts.
* date (5): milliseconds since the epoch. A `date` is midnight in the pipeline time zone; an
  aware `datetime` is that instant, a naive one is wall-clock time in the pipeline zone.
* checkbox (7): bool; an unchecked box reads as no value, which is False.
* url (15): {"link", "text"}.

A source row naming a field the table does not have, or one bitable computes itself (formula,
lookup, created time …), is refused with the field named — nothing is written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

TEXT, NUMBER, SINGLE_SELECT, MULTI_SELECT, DATE, CHECKBOX, PHONE, URL = 1, 2, 3, 4, 5, 7, 13, 15
WRITABLE = {TEXT: "text", NUMBER: "number", SINGLE_SELECT: "single select", MULTI_SELECT: "multi select",
            DATE: "date", CHECKBOX: "checkbox", PHONE: "phone", URL: "url"}
COMPUTED = {19: "lookup", 20: "formula", 1001: "created time", 1002: "modified time", 1003: "created by",
            1004: "modified by", 1005: "auto number"}
PARTITION_TYPES = {DATE, TEXT}
SECONDS_NOT_MS = 100_000_000_000  # below this a timestamp is seconds (year 5138 in ms)


class ValueProblem(ValueError):
    """A row or value the table cannot take, said in a way the user can fix (422)."""


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: int
    ui_type: str | None = None

    @property
    def kind(self) -> str:
        return WRITABLE.get(self.type) or COMPUTED.get(self.type) or f"type {self.type}"


def fields_from_api(items: Iterable[Mapping[str, Any]]) -> dict[str, FieldInfo]:
    """Field name → FieldInfo, from the fields API's items (`field_name`, `type`, `ui_type`)."""
    return {i["field_name"]: FieldInfo(i["field_name"], int(i["type"]), i.get("ui_type"))
            for i in items if "field_name" in i and "type" in i}


def midnight_ms(day: date, zone: ZoneInfo) -> int:
    return int(datetime.combine(day, time(0), tzinfo=zone).timestamp() * 1000)


def day_of_ms(ms: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).date()


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueProblem(f"{value!r} is a boolean, not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = Decimal(value.strip().replace(",", ""))
        except InvalidOperation:
            raise ValueProblem(f"{value!r} is not a number") from None
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueProblem(f"{value} is not a finite number")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueProblem(f"{value} is not a finite number")
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    raise ValueProblem(f"{value!r} ({type(value).__name__}) is not a number")


def _ms(value: Any, zone: ZoneInfo) -> int:
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=zone)
        return int(moment.timestamp() * 1000)
    if isinstance(value, date):
        return midnight_ms(value, zone)
    if isinstance(value, bool):
        raise ValueProblem(f"{value!r} is not a date")
    if isinstance(value, int | float | Decimal):
        if abs(value) < SECONDS_NOT_MS:
            raise ValueProblem(f"{value} looks like seconds; a date cell takes milliseconds (or a date)")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueProblem(f"{value!r} is not an ISO date (2026-02-15) or date-time") from None
        return _ms(parsed.date() if len(text) <= 10 else parsed, zone)
    raise ValueProblem(f"{value!r} ({type(value).__name__}) is not a date")


def _text(value: Any) -> str | None:
    if isinstance(value, bool | dict | list | tuple | set | bytes):
        raise ValueProblem(f"{value!r} ({type(value).__name__}) is not text")
    if isinstance(value, datetime | date):
        text = value.isoformat()
    elif isinstance(value, float):
        number = _number(value)
        text = str(number)
    else:
        text = str(value)
    return text or None


def to_cell(value: Any, field: FieldInfo, zone: ZoneInfo) -> Any:
    """The value a write of this field takes (None: no value). ValueProblem says why not."""
    if field.type not in WRITABLE:
        raise ValueProblem(f"field {field.name!r} is a {field.kind} field, which pipelines do not write")
    if value is None:
        return False if field.type == CHECKBOX else None
    match field.type:
        case 1 | 13:  # text, phone
            return _text(value)
        case 2:
            return _number(value)
        case 3:
            return _text(value)
        case 4:
            if not isinstance(value, str | list | tuple):
                raise ValueProblem(f"{value!r} is not a list of options")
            items = [value] if isinstance(value, str) else list(value)
            texts = [t for t in (_text(i) for i in items) if t]
            return texts or None
        case 5:
            return _ms(value, zone)
        case 7:
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueProblem(f"{value!r} is not a checkbox value (true/false)")
        case 15:
            if isinstance(value, str):
                return {"link": value, "text": value} if value else None
            if isinstance(value, Mapping) and isinstance(value.get("link"), str):
                return {"link": value["link"], "text": str(value.get("text") or value["link"])}
            raise ValueProblem(f"{value!r} is not a link")
    raise AssertionError(field.type)


def from_read(value: Any, field: FieldInfo) -> Any:
    """A value as a read returned it, in `to_cell`'s shape (anything unexpected left as is, so
    it compares unequal and gets rewritten rather than wrongly kept)."""
    if value is None or value == "" or value == []:
        return False if field.type == CHECKBOX else None
    match field.type:
        case 1 | 13 | 3:
            if isinstance(value, list) and all(isinstance(s, Mapping) and "text" in s for s in value):
                return "".join(str(s["text"]) for s in value) or None
            if isinstance(value, Mapping) and "text" in value:
                return str(value["text"]) or None
            return value
        case 2 | 5:
            try:
                number = _number(value)
            except ValueProblem:
                return value
            return int(number) if field.type == DATE else number
        case 4:
            return [str(s.get("text", s)) if isinstance(s, Mapping) else s for s in value] \
                if isinstance(value, list) else value
        case 7:
            return bool(value) if isinstance(value, bool | int) else value
        case 15:
            if isinstance(value, Mapping) and "link" in value:
                return {"link": value["link"], "text": str(value.get("text") or value["link"])}
    return value


def read_fields(raw: Mapping[str, Any], fields: Mapping[str, FieldInfo],
                names: Iterable[str]) -> dict[str, Any]:
    """A record as read, normalised, with every asked-for field present (a field Feishu left out
    has no value: None, or False for a checkbox)."""
    return {name: from_read(raw.get(name), fields[name]) for name in names if name in fields}


def convert_row(row: Mapping[str, Any], fields: Mapping[str, FieldInfo], zone: ZoneInfo,
                where: str = "row") -> dict[str, Any]:
    """One source row as cells; ValueProblem naming the row and column otherwise."""
    if not isinstance(row, Mapping):
        raise ValueProblem(f"{where} is a {type(row).__name__}, not a mapping of field names to values")
    cells: dict[str, Any] = {}
    for column, value in row.items():
        field = fields.get(column) if isinstance(column, str) else None
        if field is None:
            known = ", ".join(sorted(fields))
            raise ValueProblem(f"{where}: column {column!r} is not a field of the target table "
                               f"(its fields: {known})")
        try:
            cells[column] = to_cell(value, field, zone)
        except ValueProblem as exc:
            raise ValueProblem(f"{where}, column {column!r} ({field.kind}): {exc}") from None
    return cells


def convert_rows(rows: Sequence[Mapping[str, Any]], fields: Mapping[str, FieldInfo], zone: ZoneInfo,
                 label: str = "") -> list[dict[str, Any]]:
    prefix = f"{label} " if label else ""
    return [convert_row(row, fields, zone, f"{prefix}row {n}") for n, row in enumerate(rows, 1)]


def partition_day(cell: Any, field: FieldInfo, zone: ZoneInfo) -> date | None:
    """The day a partition cell (as `to_cell`/`from_read` give it) belongs to; None if none."""
    if cell is None:
        return None
    if field.type == DATE and isinstance(cell, int | float):
        return day_of_ms(int(cell), zone)
    if field.type == TEXT and isinstance(cell, str):
        text = cell.strip().replace("/", "-")[:10]
        try:
            return date.fromisoformat(text)
        except ValueError:
            return None
    return None


def partition_cell(day: date, field: FieldInfo, zone: ZoneInfo) -> Any:
    """What a row of `day` carries in the partition field."""
    return midnight_ms(day, zone) if field.type == DATE else day.isoformat()


def stamp_day(cells: list[dict[str, Any]], partition: FieldInfo, day: date,
              zone: ZoneInfo) -> list[dict[str, Any]]:
    """A day's rows with the partition field set to that day (a source may leave it out); a row
    that names another day is refused: this run owns this day's rows only."""
    stamped = []
    for n, row in enumerate(cells, 1):
        given = row.get(partition.name)
        if given is None:
            row = {**row, partition.name: partition_cell(day, partition, zone)}
        elif partition_day(given, partition, zone) != day:
            raise ValueProblem(f"{day} row {n}: {partition.name} says {given!r}, not {day}")
        stamped.append(row)
    return stamped


def check_target(fields: Mapping[str, FieldInfo], *, key: Sequence[str], partition: str | None,
                 group_by: str | None, sum_fields: Sequence[str]) -> list[str]:
    """What a pipeline names that the table lacks or cannot serve (every problem)."""
    problems = []
    for name in key:
        if name not in fields:
            problems.append(f"key field {name!r} is not a field of the target table")
        elif fields[name].type not in WRITABLE:
            problems.append(f"key field {name!r} is a {fields[name].kind} field, "
                            "which pipelines do not write")
    if partition is not None:
        if partition not in fields:
            problems.append(f"partition field {partition!r} is not a field of the target table")
        elif fields[partition].type not in PARTITION_TYPES:
            problems.append(f"partition field {partition!r} is a {fields[partition].kind} field; "
                            "it must be a date or text field")
    if group_by is not None and group_by not in fields:
        problems.append(f"group_by field {group_by!r} is not a field of the target table")
    for name in sum_fields:
        if name not in fields:
            problems.append(f"sum field {name!r} is not a field of the target table")
        elif fields[name].type != NUMBER:
            problems.append(f"sum field {name!r} is a {fields[name].kind} field, not a number")
    return problems
