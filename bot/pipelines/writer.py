"""The write phase of a run, under the table's write lock: read the table once, plan every day
together, write in batches, read back and plan again — a write Feishu acknowledged but lost (or
one a concurrent editor undid) shows up as a non-empty plan and is applied again, a few rounds
at most — then hand the table's final rows in scope to verification.

Reads happen after the lock is taken, so the plan is made from the table as no other pipeline
can change it until we are done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.pipelines import plan as planning
from bot.pipelines.target import Table, TableLock
from bot.pipelines.values import FieldInfo, read_fields

log = logging.getLogger(__name__)

MAX_ROUNDS = 3  # write rounds: the first, and up to two repairs


class WritesNotApplied(RuntimeError):
    """The table still differs from the source after every write round."""


@dataclass
class Written:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    duplicates: int = 0  # extra records of one key removed
    rounds: int = 0
    kept: int = 0  # records in scope the source did not give, kept (Scope.keep)
    final: list[planning.Existing] | None = None  # the table as last read: the records to verify


@dataclass(frozen=True)
class Scope:
    """Which of the table's records the run owns: all (`values` None: a mirror), or those whose
    partition cell maps (`of`) to one of `values` (the run's days). `keep`: of those, the ones
    not to delete when the source no longer gives their key."""

    partition: str | None = None
    values: Collection[Any] | None = None
    of: Callable[[Any], Any] | None = None
    keep: Callable[[planning.Existing], bool] | None = None

    def keeps(self, record: planning.Existing) -> bool:
        return self.keep is not None and self.keep(record)

    def contains(self, record: planning.Existing) -> bool:
        if self.values is None or self.partition is None:
            return True
        cell = record.fields.get(self.partition)
        return (self.of(cell) if self.of else cell) in self.values


def read_table(table: Table, fields: Mapping[str, FieldInfo], names: Sequence[str],
               lock: TableLock) -> list[planning.Existing]:
    """Every record, normalised to the shape planning compares (values.read_fields); the lock
    renewed after every page (reading a large table can outlast its TTL)."""
    return [planning.Existing(r["record_id"], read_fields(r.get("fields") or {}, fields, names))
            for r in table.read(list(names), lock.renew)]


def apply(table: Table, plan: planning.Plan, lock: TableLock, progress: Callable[[int], None]) -> None:
    """Deletes first (room below the table's row limit), then updates, then creates; the lock's
    TTL is renewed before every batch, so none is sent by a run that lost it."""
    for ids in plan.delete_batches():
        lock.renew()
        table.delete(ids)
        progress(len(ids))
    for updates in plan.update_batches():
        lock.renew()
        table.update(updates)
        progress(len(updates))
    for rows in plan.create_batches():
        lock.renew()
        table.create(rows)
        progress(len(rows))


def write(table: Table, fields: Mapping[str, FieldInfo], incoming: Sequence[Mapping[str, Any]],
          key: Sequence[str], scope: Scope, lock: TableLock, *, names: Sequence[str],
          reread_delay: float = 0.0, progress: Callable[[int], None] = lambda n: None) -> Written:
    """Make the table hold `incoming` in `scope`; WritesNotApplied if it still does not after
    MAX_ROUNDS rounds of writes. The result's `final` is what to verify: the records in scope
    but those kept without the source giving them."""
    def plan_for(existing: list[planning.Existing]) -> planning.Plan:
        return planning.plan_upsert(existing, incoming, key, scope.values, partition=scope.partition,
                                    scope_of=scope.of, deletable=lambda record: not scope.keeps(record))

    written = Written()
    existing = read_table(table, fields, names, lock)
    plan = plan_for(existing)
    while not plan.empty:
        if written.rounds == MAX_ROUNDS:
            raise WritesNotApplied(
                f"after {MAX_ROUNDS} rounds of writes the table still differs: {len(plan.creates)} to "
                f"create, {len(plan.updates)} to update, {len(plan.deletes)} to delete")
        if written.rounds:
            log.warning("a pipeline's writes did not all land; writing again",
                        extra={"round": written.rounds + 1, "creates": len(plan.creates),
                               "updates": len(plan.updates), "deletes": len(plan.deletes)})
        apply(table, plan, lock, progress)
        written.rounds += 1
        written.created += len(plan.creates)
        written.updated += len(plan.updates)
        written.deleted += len(plan.deletes)
        written.duplicates += plan.duplicates
        if reread_delay > 0:
            time.sleep(reread_delay)  # let the table settle before it is read back
        existing = read_table(table, fields, names, lock)
        plan = plan_for(existing)
    wanted = {planning.key_of(row, key) for row in incoming}
    owned = [r for r in existing if scope.contains(r)]
    written.final = [r for r in owned if planning.key_of(r.fields, key) in wanted or not scope.keeps(r)]
    written.kept = len(owned) - len(written.final)
    return written
