"""One consistent state of a table that users edit while it is being paged. Pure; no I/O.

Feishu answers `total` with every records page, and a large table read in many pages can gain or
lose rows in between. Page tokens behave like offsets into the view's order (assumption), so a
row inserted before the cursor pushes one already read onto the next page (a duplicate) and a
row deleted before it pulls an unread one back (a miss). A listing is therefore judged, not
trusted:

* a pass is **changed** when it saw a duplicate, a `total` that moved between pages, or a row
  created or modified since the pass began by the server's clock (its `Date` header): a row
  added after the cursor while one before it was deleted leaves count and total as they were,
  yet an unchanged row was pulled out of view;
* an unchanged pass whose row count matches its final `total` is accepted as it is;
* a changed pass is read again (a bounded number of times) until one is unchanged;
* two unchanged passes with the same rows and the same shortfall are a truncated listing: that
  is loud, as before;
* if the table never holds still, the passes are merged (newest copy of each row), the rows the
  last pass did not show are checked with `batch_get` (gone ones dropped), and the result is
  accepted. What changed during the read is then corrected by the change events of the rows
  that changed (the source subscribes before its first read) and by the next full read; only a
  shortfall larger than all the change the passes saw is still an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

FRESH_SKEW_MS = 60_000  # without a server clock: rows touched this close before a pass count as during
MAX_PASSES = 3


class Verdict(Enum):
    ACCEPT = "accept"  # the last pass is one consistent state
    AGAIN = "again"  # read the table once more
    TRUNCATED = "truncated"  # the listing stops short of its total on a table that holds still
    RECONCILE = "reconcile"  # out of passes: merge them and check the doubtful rows


@dataclass
class Pass:
    """One listing of a table, page by page. `previous` maps the rows of the pass before to their
    modification time, so a row it already saw unchanged is not taken for a new change."""

    previous: dict[str, Any] = field(default_factory=dict)
    started_ms: int | None = None  # server time of the first page (ms)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # record_id → newest copy
    totals: list[int] = field(default_factory=list)
    duplicates: int = 0
    fresh: int = 0

    def add_page(self, items: Iterable[dict[str, Any]], total: Any, now_ms: int) -> None:
        """One page as answered at `now_ms` (the server's clock when known)."""
        if self.started_ms is None:
            self.started_ms = now_ms
        if isinstance(total, int):
            self.totals.append(total)
        for item in items:
            record_id = item["record_id"]
            if record_id in self.records:
                self.duplicates += 1
            elif self._touched_during(item):
                self.fresh += 1
            self.records[record_id] = item  # a later page's copy is the newer one

    def _touched_during(self, item: dict[str, Any]) -> bool:
        stamp = max(_ms(item.get("created_time")), _ms(item.get("last_modified_time")))
        if stamp < (self.started_ms or 0):
            return False
        seen = self.previous.get(item["record_id"], _UNSEEN)
        return seen is _UNSEEN or seen != item.get("last_modified_time")

    @property
    def final_total(self) -> int | None:
        return self.totals[-1] if self.totals else None

    @property
    def changed(self) -> bool:
        return bool(self.duplicates or self.fresh or len(set(self.totals)) > 1)

    @property
    def complete(self) -> bool:
        return self.final_total is None or len(self.records) == self.final_total

    @property
    def churn(self) -> int:
        """How much change this pass saw: duplicates, new or edited rows, moves of `total`."""
        moves = sum(abs(b - a) for a, b in zip(self.totals, self.totals[1:], strict=False))
        return self.duplicates + self.fresh + moves

    def stamps(self) -> dict[str, Any]:
        """record_id → modification time, the `previous` of the next pass."""
        return {rid: r.get("last_modified_time") for rid, r in self.records.items()}


_UNSEEN = object()


def _ms(value: Any) -> int:
    return value if isinstance(value, int) else 0


def decide(passes: Sequence[Pass], max_passes: int = MAX_PASSES) -> Verdict:
    last = passes[-1]
    if not last.changed and last.complete:
        return Verdict.ACCEPT
    if not last.changed and len(passes) >= 2:
        before = passes[-2]
        if (not before.changed and before.final_total == last.final_total
                and before.records.keys() == last.records.keys()):
            return Verdict.TRUNCATED
    return Verdict.AGAIN if len(passes) < max_passes else Verdict.RECONCILE


def merge(passes: Sequence[Pass]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every row any pass saw (the newest copy), and the ids the last pass did not show: rows
    deleted since, or pushed out of its view — `batch_get` tells which."""
    merged: dict[str, dict[str, Any]] = {}
    for one in passes:
        merged.update(one.records)
    last = passes[-1].records
    return merged, [rid for rid in merged if rid not in last]


def reconcile(merged: dict[str, dict[str, Any]], found: Iterable[dict[str, Any]],
              absent: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The merged rows with the checked ones' current copies, and without those Feishu no longer has."""
    result = dict(merged)
    for record in found:
        result[record["record_id"]] = record
    for record_id in absent:
        result.pop(record_id, None)
    return result


def shortfall(count: int, passes: Sequence[Pass]) -> str | None:
    """Why a reconciled read is still wrong, or None: rows missing beyond what the change seen
    during the read can explain (a truncated listing on a busy table)."""
    total = passes[-1].final_total
    if total is None or count >= total:
        return None
    seen = sum(one.churn for one in passes)
    if total - count <= seen:
        return None
    return (f"got {count} records but Feishu declared {total}, after {len(passes)} reads that saw "
            f"only {seen} changes")
