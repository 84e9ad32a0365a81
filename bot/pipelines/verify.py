"""Did the table end up holding what the run meant to write? (pure)

Counted per `group_by` value (an ad account): rows expected (the source's) vs rows found (read
back from the table, in the run's scope), and the sums of `sum_fields` (消耗). Independent of
the planner on purpose: the re-plan after writing checks record by record that the fields
match; this checks the totals a person would check, the way they would.

Groups the source said to expect (`expected_groups`, a FetchResult's) but gave no rows for are
reported as missing — not a mismatch, a shortfall at the source ("6/7 accounts").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TOLERANCE = 1e-6  # relative: bitable keeps doubles


@dataclass(frozen=True)
class GroupCheck:
    group: str
    expected_rows: int
    found_rows: int
    expected_sums: dict[str, float]
    found_sums: dict[str, float]

    @property
    def ok(self) -> bool:
        return self.expected_rows == self.found_rows and all(
            _close(self.expected_sums[f], self.found_sums.get(f, 0.0)) for f in self.expected_sums)

    def mismatch(self, label: str) -> str | None:
        if self.ok:
            return None
        parts = []
        if self.expected_rows != self.found_rows:
            parts.append(f"应有 {self.expected_rows} 条，表中 {self.found_rows} 条")
        for name, want in self.expected_sums.items():
            got = self.found_sums.get(name, 0.0)
            if not _close(want, got):
                parts.append(f"{name} 应为 {fmt_number(want)}，表中 {fmt_number(got)}")
        return f"{label} {self.group or '（空）'}：" + "；".join(parts)


@dataclass(frozen=True)
class Verification:
    groups: list[GroupCheck]
    expected_rows: int
    found_rows: int
    expected_sums: dict[str, float]
    found_sums: dict[str, float]
    missing_groups: list[str] = field(default_factory=list)  # expected, but the source gave no rows
    failed_groups: dict[str, str] = field(default_factory=dict)  # the source's own errors

    @property
    def ok(self) -> bool:
        return all(g.ok for g in self.groups)

    def mismatches(self, label: str = "分组") -> list[str]:
        return [m for g in self.groups if (m := g.mismatch(label))]

    @property
    def groups_total(self) -> int:
        return len({g.group for g in self.groups} | set(self.missing_groups) | set(self.failed_groups))

    @property
    def groups_ok(self) -> int:
        return sum(1 for g in self.groups if g.ok and g.found_rows > 0 and g.group not in self.failed_groups)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def fmt_number(value: float) -> str:
    """1234.5 → 1,234.5; 13.0 → 13 (two decimals at most)."""
    if math.isfinite(value) and value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def group_name(value: Any) -> str:
    """A group value as text (an account id read back as text or as a number)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _tally(rows: Iterable[Mapping[str, Any]], group_by: str | None,
           sum_fields: Sequence[str]) -> dict[str, tuple[int, dict[str, float]]]:
    tally: dict[str, tuple[int, dict[str, float]]] = {}
    for row in rows:
        name = group_name(row.get(group_by)) if group_by else ""
        count, sums = tally.get(name, (0, {f: 0.0 for f in sum_fields}))
        for f in sum_fields:
            value = row.get(f)
            if isinstance(value, int | float) and not isinstance(value, bool):
                sums[f] = math.fsum((sums[f], float(value)))
        tally[name] = (count + 1, sums)
    return tally


def verify(expected: Sequence[Mapping[str, Any]], found: Sequence[Mapping[str, Any]], *,
           group_by: str | None = None, sum_fields: Sequence[str] = (),
           expected_groups: Iterable[str] = (),
           failed_groups: Mapping[str, str] | None = None) -> Verification:
    """Rows and sums per group, expected vs found; `found` is the table's rows in the run's scope."""
    want = _tally(expected, group_by, sum_fields)
    got = _tally(found, group_by, sum_fields)
    zero = {f: 0.0 for f in sum_fields}
    groups = [GroupCheck(name, want.get(name, (0, zero))[0], got.get(name, (0, zero))[0],
                         dict(want.get(name, (0, zero))[1]), dict(got.get(name, (0, zero))[1]))
              for name in sorted(set(want) | set(got))]
    seen = set(want)
    failed = dict(failed_groups or {})
    missing = sorted({group_name(g) for g in expected_groups} - seen - set(failed))
    return Verification(
        groups=groups,
        expected_rows=len(expected),
        found_rows=len(found),
        expected_sums={f: math.fsum(g.expected_sums[f] for g in groups) for f in sum_fields},
        found_sums={f: math.fsum(g.found_sums[f] for g in groups) for f in sum_fields},
        missing_groups=missing,
        failed_groups=failed,
    )
