"""Bitable record writes, the parts without Flask: what a cell accepts (and how it is stored),
the per-table write flag behind `1254291`, the rate windows behind `1254290` / `99991400`, and
`client_token` idempotency. Feishu's rules and their sources are in docs/sandbox.md ("Bitable
record writes"); the endpoints are in sandbox/products/bitable_writes.py.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sandbox.seed import (
    ATTACHMENT,
    AUTO_NUMBER,
    CHECKBOX,
    CREATED_TIME,
    DATE,
    FORMULA,
    LINK,
    LOOKUP,
    MULTI,
    NUMBER,
    PERSON,
    PHONE,
    SELECT,
    TEXT,
    UI_TYPES,
    URL,
    USERS,
    Field,
    Table,
)

# Error codes of the record write pages' error tables (batch_create, batch_update, batch_delete,
# create, update, delete), with the HTTP status each table gives.
WRONG_REQUEST_JSON = 1254000  # 200
WRONG_REQUEST_BODY = 1254001  # 200
WRONG_RECORD_ID = 1254006  # 200
FIELD_TYPES_MISMATCH = 1254015  # 400 "Field types do not match."
INVALID_CLIENT_TOKEN = 1254037  # 400 "Invalid client token" (not a uuidv4)
RECORD_NOT_FOUND = 1254043  # 200 RecordIdNotFound
FIELD_NAME_NOT_FOUND = 1254045  # 200 FieldNameNotFound
RECORD_EXCEED_LIMIT = 1254103  # 200 RecordExceedLimit (records in one table)
RECORD_ADD_ONCE_EXCEED_LIMIT = 1254104  # 200 RecordAddOnceExceedLimit (records in one call)
ATTACH_PERM_NOT_ALLOW = 1254303  # 200: the attachment was not uploaded to this bitable
TOO_MANY_REQUEST = 1254290  # 200 TooManyRequest
WRITE_CONFLICT = 1254291  # 200 Write conflict
CLIENT_TOKEN_CONFLICT = 1255006  # 400 "Client token conflict"
REQUEST_TIMEOUT = 1255040  # 504 "请求超时"
SAME_REQUEST_REPEATED = 1254608  # 403 "Same API requests are submitted repeatedly."

CONV_FAIL = {  # a value the field's type cannot take
    TEXT: (1254060, "TextFieldConvFail"), NUMBER: (1254061, "NumberFieldConvFail"),
    SELECT: (1254062, "SingleSelectFieldConvFail"), MULTI: (1254063, "MultiSelectFieldConvFail"),
    DATE: (1254064, "DatetimeFieldConvFail"), CHECKBOX: (1254065, "CheckboxFieldConvFail"),
    PERSON: (1254066, "UserFieldConvFail"), LINK: (1254067, "LinkFieldConvFail"),
    URL: (1254068, "URLFieldConvFail"), ATTACHMENT: (1254069, "AttachFieldConvFail"),
    PHONE: (1254072, "InvalidPhoneNumber"),
}
# Computed by Feishu, not in the write pages' list of supported field types: refused.
READ_ONLY = {FORMULA, LOOKUP, CREATED_TIME, 1002, 1003, 1004, AUTO_NUMBER}
# Types a table made through `POST /sandbox/bitable/tables` may have.
TABLE_TYPES = set(UI_TYPES)

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.I)
PHONE_RE = re.compile(r"\+?[0-9][0-9 \-]{0,39}")
USER_NAMES = dict(USERS)


class Refusal(Exception):
    """A write refused with one of Feishu's codes: nothing of the call is applied."""

    def __init__(self, code: int, msg: str, status: int = 200) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


# -- values ---------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _person(value: Any) -> list[dict[str, str]] | None:
    if not isinstance(value, list) or not all(
            isinstance(p, dict) and set(p) == {"id"} and isinstance(p["id"], str) and p["id"] for p in value):
        return None
    return [{"id": p["id"], "name": USER_NAMES.get(p["id"], ""), "en_name": "",
             "email": f"{p['id']}@sandbox.example"} for p in value]


def stored_value(table: Table, fld: Field, value: Any, tables: dict[str, Table],
                 new_options: dict[str, list[str]]) -> Any:
    """`value` written to `fld` as the sandbox stores (and the read endpoints return) it, or a
    Refusal. Option names not yet in a select field go to `new_options` (Feishu creates them)."""
    if fld.type in READ_ONLY:
        raise Refusal(FIELD_TYPES_MISMATCH, f"field {fld.field_name!r} ({UI_TYPES[fld.type]}) is computed "
                                            "by Feishu and cannot be written", 400)
    kind = fld.type
    if value is None or (value == "" and kind in (TEXT, PHONE)):
        return None  # clears the cell ("若想对人员字段传空，可传 null"); an empty text is no text
    ok: Any = None
    if (kind == TEXT and isinstance(value, str)) or (kind == NUMBER and _is_number(value)):
        ok = value
    elif kind == DATE and isinstance(value, int) and not isinstance(value, bool):
        ok = value  # a millisecond timestamp
    elif kind == CHECKBOX and isinstance(value, bool):
        ok = value
    elif kind == SELECT and isinstance(value, str) and value:
        ok = value
        _note_options(fld, [value], new_options)
    elif kind == MULTI and isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        ok = list(value)
        _note_options(fld, value, new_options)
    elif kind == PERSON:
        ok = _person(value)
    elif kind == PHONE and isinstance(value, str) and PHONE_RE.fullmatch(value):
        ok = value
    elif kind == URL and isinstance(value, dict) and isinstance(value.get("link"), str) and value["link"] \
            and isinstance(value.get("text", ""), str) and set(value) <= {"link", "text"}:
        ok = {"link": value["link"], "text": value.get("text", value["link"])}
    elif kind == LINK and isinstance(value, list) and all(isinstance(v, str) for v in value):
        target = tables.get((fld.property or {}).get("table_id", table.table_id))
        if target is not None and all(v in target.records for v in value):
            ok = {"link_record_ids": list(value)}
    elif kind == ATTACHMENT and isinstance(value, list) and all(
            isinstance(a, dict) and isinstance(a.get("file_token"), str) for a in value):
        if value:  # the sandbox has no media upload: no file token belongs to the bitable
            raise Refusal(ATTACH_PERM_NOT_ALLOW, "AttachPermNotAllow: upload the attachment to this "
                                                 "bitable first (not emulated)")
        ok = []
    if ok is None:
        code, name = CONV_FAIL.get(kind, (FIELD_TYPES_MISMATCH, "Field types do not match."))
        status = 400 if code == FIELD_TYPES_MISMATCH else 200
        raise Refusal(code, f"{name}: field {fld.field_name!r} ({UI_TYPES.get(kind, kind)}) cannot take "
                            f"{type(value).__name__} {value!r:.60}", status)
    return ok


def _note_options(fld: Field, names: list[str], new_options: dict[str, list[str]]) -> None:
    known = {o.get("name") for o in (fld.property or {}).get("options", [])}
    pending = new_options.setdefault(fld.field_id, [])
    pending.extend(n for n in names if n not in known and n not in pending)


def stored_fields(table: Table, fields: Any, tables: dict[str, Table],
                  new_options: dict[str, list[str]]) -> dict[str, Any]:
    """A record's `fields` as written, validated against the table and converted for storage
    (None for a cell to clear). Raises Refusal."""
    if not isinstance(fields, dict):
        raise Refusal(WRONG_REQUEST_BODY, "WrongRequestBody: fields must be an object of field name → value")
    by_name = {f.field_name: f for f in table.fields}
    out: dict[str, Any] = {}
    for name, value in fields.items():
        fld = by_name.get(name)
        if fld is None:
            raise Refusal(FIELD_NAME_NOT_FOUND, f"FieldNameNotFound: {name!r}")
        out[name] = stored_value(table, fld, value, tables, new_options)
    return out


def add_options(table: Table, new_options: dict[str, list[str]]) -> None:
    """Create the select options a write named (Feishu: "对于新的选项值，将会创建一个新的选项")."""
    for fld in table.fields:
        names = new_options.get(fld.field_id)
        if not names:
            continue
        fld.property = dict(fld.property or {})
        options = list(fld.property.get("options", []))
        for name in names:
            options.append({"name": name, "id": f"opt{len(options):04d}n", "color": len(options) % 55})
        fld.property["options"] = options


def new_table(table_id: str, name: Any, specs: Any, field_id) -> Table:
    """An empty table from `[{"field_name", "type", "property"?, "options"?}]`; the first field is
    the primary one. `field_id(n)` makes field ids. Raises ValueError with the reason."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("'name' (a non-empty string) is required")
    if not isinstance(specs, list) or not specs:
        raise ValueError("'fields' (a non-empty list of {field_name, type}) is required")
    fields: list[Field] = []
    for n, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise ValueError("each field is an object {field_name, type, property?, options?}")
        fname, ftype = spec.get("field_name"), spec.get("type", TEXT)
        if not isinstance(fname, str) or not fname.strip() or fname in {f.field_name for f in fields}:
            raise ValueError(f"field {n}: 'field_name' must be a non-empty, unique string")
        if not isinstance(ftype, int) or isinstance(ftype, bool) or ftype not in TABLE_TYPES:
            raise ValueError(f"field {fname!r}: type must be one of {sorted(TABLE_TYPES)}")
        prop = spec.get("property")
        if prop is not None and not isinstance(prop, dict):
            raise ValueError(f"field {fname!r}: property must be an object")
        if spec.get("options") is not None:
            opts = spec["options"]
            names = isinstance(opts, list) and all(isinstance(o, str) for o in opts)
            if ftype not in (SELECT, MULTI) or not names:
                raise ValueError(f"field {fname!r}: options (a list of names) only for select fields")
            prop = {**(prop or {}), "options": [{"name": o, "id": f"opt{i:04d}", "color": i % 55}
                                                for i, o in enumerate(opts)]}
        fields.append(Field(field_id(n), fname.strip(), ftype, prop, is_primary=not fields))
    return Table(table_id, name.strip(), fields)


# -- concurrency, rates, idempotency ---------------------------------------------------------


@dataclass
class TokenEntry:
    fingerprint: str
    at: float
    answer: dict[str, Any] | None = None  # the first call's `data`; None while it runs


@dataclass
class WriteDesk:
    """Which tables are being written, recent writes (for rates) and client tokens seen."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    writing: set[tuple[str, str]] = field(default_factory=set)
    table_times: dict[tuple[str, str], deque] = field(default_factory=dict)
    api_times: dict[str, deque] = field(default_factory=dict)
    tokens: dict[str, TokenEntry] = field(default_factory=dict)
    conflicts: int = 0  # writes refused with 1254291, for tests

    @staticmethod
    def _admit(window: deque, limit: float, now: float) -> bool:
        while window and window[0] <= now - 1.0:
            window.popleft()
        if limit and len(window) >= limit:
            return False
        window.append(now)
        return True

    def admit_api(self, endpoint: str, limit: float) -> bool:
        """One call of a write endpoint, if fewer than `limit` came in the last second (0: any)."""
        with self.lock:
            return self._admit(self.api_times.setdefault(endpoint, deque()), limit, time.monotonic())

    def admit_table(self, key: tuple[str, str], limit: float) -> bool:
        with self.lock:
            return self._admit(self.table_times.setdefault(key, deque()), limit, time.monotonic())

    def begin(self, key: tuple[str, str]) -> bool:
        """Take the table's write flag; False (a conflict) when another write holds it."""
        with self.lock:
            if key in self.writing:
                self.conflicts += 1
                return False
            self.writing.add(key)
            return True

    def end(self, key: tuple[str, str]) -> None:
        with self.lock:
            self.writing.discard(key)

    def claim(self, token: str, fingerprint: str, ttl: float) -> tuple[str, dict[str, Any] | None]:
        """("new", None) the first time; ("replay", data) for a repeat of a finished call;
        ("conflict", None) for the token on another request; ("running", None) while the first
        call with it is still being processed."""
        now = time.time()
        with self.lock:
            entry = self.tokens.get(token)
            if entry is not None and entry.answer is not None and now - entry.at > ttl:
                entry = None
            if entry is None:
                self.tokens[token] = TokenEntry(fingerprint, now)
                return "new", None
            if entry.fingerprint != fingerprint:
                return "conflict", None
            if entry.answer is None:
                return "running", None
            return "replay", entry.answer

    def settle(self, token: str, answer: dict[str, Any] | None) -> None:
        """The call that claimed `token` applied `answer` (kept for repeats) or nothing (None: the
        token is free again)."""
        with self.lock:
            if answer is None:
                self.tokens.pop(token, None)
            elif token in self.tokens:
                self.tokens[token].answer = answer
                self.tokens[token].at = time.time()
