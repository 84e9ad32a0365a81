"""An in-memory bitable table for pipeline tests (the sandbox's write endpoints are not there
yet), and Python sources a test pipeline can name (PIPELINE_MODULES includes this module).

`FakeTable` answers like Feishu where it matters to planning: a read returns text either as a
plain string or as segments (alternating, so both shapes are compared), numbers as floats, dates
as millisecond ints, and leaves out empty cells and unchecked boxes; writes are checked against
bitable's batch limits and each field type's value shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from bot.pipelines.context import FetchContext, FetchResult
from bot.pipelines.plan import CREATE_BATCH, DELETE_BATCH, UPDATE_BATCH, Update
from bot.pipelines.values import CHECKBOX, DATE, NUMBER, SINGLE_SELECT, TEXT, FieldInfo

AD_FIELDS = {f.name: f for f in (
    FieldInfo("账户ID", TEXT), FieldInfo("日期", DATE), FieldInfo("计划", TEXT), FieldInfo("消耗", NUMBER),
    FieldInfo("备注", TEXT), FieldInfo("已核对", CHECKBOX), FieldInfo("渠道", SINGLE_SELECT),
    FieldInfo("汇总", 20),
)}

SHAPES = {TEXT: str, SINGLE_SELECT: str, NUMBER: (int, float), DATE: int, CHECKBOX: bool}


def _empty(value: Any) -> bool:
    """What Feishu leaves out of a read: no value, empty text or list, an unchecked box (but 0)."""
    return value is None or value is False or value == "" or value == []


class FakeTable:
    def __init__(self, fields: dict[str, FieldInfo] | None = None) -> None:
        self._fields = dict(fields or AD_FIELDS)
        self.records: dict[str, dict[str, Any]] = {}
        self.calls = 0
        self.writes: list[tuple[str, int]] = []  # (operation, records in the batch)
        self.lose_creates = 0  # batches whose records Feishu acknowledges, then loses
        self.page_read: Callable[[], None] = lambda: None  # a test's hook: e.g. a slow page
        self._next = 0

    # -- reads --------------------------------------------------------------------------------
    def fields(self) -> dict[str, FieldInfo]:
        self.calls += 1
        return dict(self._fields)

    def read(self, names: list[str], alive: Callable[[], None] = lambda: None) -> list[dict[str, Any]]:
        for _ in range(max(1, math.ceil(len(self.records) / 500))):  # a call per page
            self.calls += 1
            self.page_read()
            alive()
        return [{"record_id": rid, "fields": {k: self._shown(k, v, n) for k, v in fields.items()
                                              if k in names and not _empty(v)}}
                for n, (rid, fields) in enumerate(self.records.items())]

    def _shown(self, name: str, value: Any, n: int) -> Any:
        kind = self._fields[name].type
        if kind == TEXT and n % 2:
            return [{"type": "text", "text": value}]
        if kind == NUMBER:
            return float(value)
        return value

    # -- writes -------------------------------------------------------------------------------
    def _check(self, fields: dict[str, Any]) -> None:
        for name, value in fields.items():
            field = self._fields[name]  # KeyError: a field the table lacks
            assert field.type in SHAPES, f"wrote computed field {name}"
            if value is not None:
                assert isinstance(value, SHAPES[field.type]), (name, value)
                assert not (field.type == NUMBER and isinstance(value, bool)), (name, value)

    def create(self, rows: list[dict[str, Any]]) -> list[str]:
        assert 0 < len(rows) <= CREATE_BATCH
        self.calls += 1
        self.writes.append(("create", len(rows)))
        ids = []
        for row in rows:
            self._check(row)
            self._next += 1
            ids.append(f"rec{self._next:08d}")
        if self.lose_creates:
            self.lose_creates -= 1
            return ids
        for rid, row in zip(ids, rows, strict=True):
            self.records[rid] = dict(row)
        return ids

    def update(self, updates: list[Update]) -> None:
        assert 0 < len(updates) <= UPDATE_BATCH
        self.calls += 1
        self.writes.append(("update", len(updates)))
        for u in updates:
            self._check(u.fields)
            record = self.records[u.record_id]
            for name, value in u.fields.items():
                if value is None:
                    record.pop(name, None)
                else:
                    record[name] = value

    def delete(self, record_ids: list[str]) -> None:
        assert 0 < len(record_ids) <= DELETE_BATCH
        self.calls += 1
        self.writes.append(("delete", len(record_ids)))
        for rid in record_ids:
            del self.records[rid]

    # -- test conveniences --------------------------------------------------------------------
    def put(self, fields: dict[str, Any]) -> str:
        self._next += 1
        rid = f"rec{self._next:08d}"
        self.records[rid] = dict(fields)
        return rid

    def rows(self) -> list[dict[str, Any]]:
        return list(self.records.values())


# -- sources ----------------------------------------------------------------------------------

FETCHED: list[date] = []  # the days `two_accounts` and `thirteen_rows` were called for


def two_accounts(ctx: FetchContext) -> list[dict[str, Any]]:
    FETCHED.append(ctx.day)
    return [{"账户ID": "a1", "计划": "p1", "消耗": Decimal("10.50")},
            {"账户ID": "a2", "计划": "p1", "消耗": 3}]


def thirteen_rows(ctx: FetchContext) -> FetchResult:
    """13 rows a day over 7 accounts, one of which gives nothing (the user's morning log)."""
    FETCHED.append(ctx.day)
    rows = [{"账户ID": f"acct{n % 6 + 1}", "计划": f"p{n}", "消耗": n * 1.25} for n in range(13)]
    return FetchResult(rows, expected_groups=[f"acct{n}" for n in range(1, 8)])


def unknown_column(ctx: FetchContext) -> list[dict[str, Any]]:
    return [{"账户ID": "a1", "计划": "p1", "点击量": 5}]


def unreachable(ctx: FetchContext) -> list[dict[str, Any]]:
    raise ConnectionError("the ad platform did not answer")


def no_rows(ctx: FetchContext) -> list[dict[str, Any]]:
    return []


def with_token(ctx: FetchContext) -> list[dict[str, Any]]:
    token = ctx.token()
    if token == "expired":
        token = ctx.token_rejected(token)
    return [{"账户ID": token, "计划": "p1", "消耗": 1}]


SOURCE_TROUBLE: dict[str, Any] = {"failed": set(), "empty": False, "empty_days": set()}  # `two_plans_each`'s


def two_plans_each(ctx: FetchContext) -> FetchResult:
    """Accounts a1 and a2, two plans each; an account in SOURCE_TROUBLE["failed"] cannot be
    fetched, and SOURCE_TROUBLE["empty"] (or "empty_days") makes the platform answer with nothing."""
    if SOURCE_TROUBLE["empty"] or ctx.day in SOURCE_TROUBLE["empty_days"]:
        return FetchResult([], expected_groups=["a1", "a2"])
    failed = {a: "接口超时" for a in SOURCE_TROUBLE["failed"]}
    rows = [{"账户ID": a, "计划": p, "消耗": 5}
            for a in ("a1", "a2") if a not in failed for p in ("p1", "p2")]
    return FetchResult(rows, expected_groups=["a1", "a2"], failed_groups=failed)
