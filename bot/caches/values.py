"""One value shape per field, whichever endpoint a record came from. Pure; no I/O.

Feishu answers a text field (type 1: text, email, barcode) in two shapes: the records list gives
a plain string unless asked for `text_field_as_array=true`, while `batch_get` (the re-fetch after
a change event) always gives segments `[{"text", "type", ...}]` (the record docs'
"多维表格记录数据结构": written as a string, returned as a list of objects). Every other type has
one documented shape for both. Without this module a record would change shape in the cache
merely because an event re-fetched it.

The cache keeps the list endpoint's default: text as one plain string, the segments' texts
joined. That is what a full sync has always stored, what people filter on (`问题编号=BUG-0001`)
and what the REST API serves; mention and link segments keep their visible text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

TEXT = 1  # bitable field type of text, email and barcode fields (told apart by ui_type)


def plain_text(value: Any) -> Any:
    """A text cell as one string: segments `[{"text": …}, …]` joined; anything else unchanged."""
    if isinstance(value, list) and all(isinstance(s, dict) and "text" in s for s in value):
        return "".join(str(s["text"]) for s in value)
    return value


def normalise_fields(fields: Mapping[str, Any], types: Mapping[str, int]) -> dict[str, Any]:
    """A record's fields in the cache's one shape; fields of unknown type are left as they are."""
    return {name: plain_text(value) if types.get(name) == TEXT else value for name, value in fields.items()}


def normalise_records(records: Iterable[dict[str, Any]], types: Mapping[str, int]) -> list[dict[str, Any]]:
    """Records (`{record_id, fields, ...}`) with their fields normalised; the input is not changed."""
    return [{**r, "fields": normalise_fields(r.get("fields") or {}, types)} for r in records]


def field_types(fields: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Field name → type, from the fields API's items (`field_name`, `type`)."""
    return {f["field_name"]: f["type"] for f in fields if "field_name" in f and "type" in f}


def unknown_fields(records: Iterable[Mapping[str, Any]], types: Mapping[str, int]) -> set[str]:
    """Field names the records carry that `types` does not know (a field added since the last
    schema read): their shape cannot be normalised until the schema is read again."""
    return {name for r in records for name in (r.get("fields") or {}) if name not in types}
