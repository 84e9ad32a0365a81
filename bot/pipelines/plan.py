"""What to write so a table holds what the source gave (pure).

`plan_upsert` compares the records read from the table (normalised by values.read_fields) with
the source's rows (converted by values.to_cell) by key:

* a row whose key the table lacks is created; one whose key it has is updated only in the
  fields that differ — so re-running a day plans nothing;
* a table row in scope whose key the source no longer gives is deleted — unless `deletable`
  says to keep it (the source could not fetch its group, gave nothing at all for its day, or
  the pipeline only upserts). The scope is the whole table for a mirror (no partition), else
  the rows whose partition value is one of the run's days; rows of other days are never touched;
* a key the table holds more than once (an earlier bug, a hand-made copy) keeps one record —
  one already right if there is one — and the others are deleted;
* a key the source gives twice is an error naming it: which row wins cannot be guessed.

Batches follow bitable's limits: 1,000 records per batch_create/batch_update, 500 ids per
batch_delete.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

CREATE_BATCH = 1000
UPDATE_BATCH = 1000
DELETE_BATCH = 500

T = TypeVar("T")


class DuplicateKey(ValueError):
    """The source gave one key twice."""


@dataclass(frozen=True)
class Existing:
    record_id: str
    fields: dict[str, Any]  # normalised (values.read_fields)


@dataclass(frozen=True)
class Update:
    record_id: str
    fields: dict[str, Any]  # only the fields that change


@dataclass
class Plan:
    creates: list[dict[str, Any]] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    unchanged: int = 0
    duplicates: int = 0  # extra records of one key among the deletes

    @property
    def empty(self) -> bool:
        return not (self.creates or self.updates or self.deletes)

    @property
    def writes(self) -> int:
        """The API calls the plan takes."""
        return (_batches(len(self.creates), CREATE_BATCH) + _batches(len(self.updates), UPDATE_BATCH)
                + _batches(len(self.deletes), DELETE_BATCH))

    def create_batches(self) -> list[list[dict[str, Any]]]:
        return list(chunks(self.creates, CREATE_BATCH))

    def update_batches(self) -> list[list[Update]]:
        return list(chunks(self.updates, UPDATE_BATCH))

    def delete_batches(self) -> list[list[str]]:
        return list(chunks(self.deletes, DELETE_BATCH))


def _batches(count: int, size: int) -> int:
    return -(-count // size)


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """Consecutive slices of at most `size` items (none for no items)."""
    if size < 1:
        raise ValueError("batch size must be positive")
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def key_of(fields: Mapping[str, Any], key: Sequence[str]) -> tuple[Any, ...]:
    """A key as a hashable tuple (lists — multi-select values — become tuples)."""
    return tuple(tuple(v) if isinstance(v, list) else _hashable(v) for v in (fields.get(k) for k in key))


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted(value.items()))
    return value


def describe_key(key: Sequence[str], values: tuple[Any, ...]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in zip(key, values, strict=True))


def changed_fields(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `wanted` whose value `current` does not already hold."""
    return {name: value for name, value in wanted.items() if current.get(name) != value}


def plan_upsert(existing: Sequence[Existing], incoming: Sequence[Mapping[str, Any]], key: Sequence[str],
                partition_values: Collection[Any] | None = None, *, partition: str | None = None,
                scope_of: Callable[[Any], Any] | None = None,
                deletable: Callable[[Existing], bool] | None = None) -> Plan:
    """The writes that make the table hold `incoming`. `partition_values` None: the whole table
    is in scope (mirror); else a record is in scope when `scope_of(its partition cell)` (identity
    by default — e.g. the cell's day for a date field) is one of them. A record in scope that the
    source no longer gives is deleted when `deletable(record)` (default: always)."""
    if partition_values is not None and partition is None:
        raise ValueError("partition_values needs the partition field")
    scope = scope_of or (lambda cell: cell)

    def in_scope(record: Existing) -> bool:
        if partition_values is None:
            return True
        return scope(record.fields.get(partition)) in partition_values

    wanted: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for number, row in enumerate(incoming, 1):
        k = key_of(row, key)
        if any(v is None for v in k):
            missing = [name for name, v in zip(key, k, strict=True) if v is None]
            raise DuplicateKey(f"row {number} has no value for key field(s) {', '.join(missing)}")
        if k in wanted:
            raise DuplicateKey(f"the source gave the key {describe_key(key, k)} twice (row {number})")
        wanted[k] = row

    by_key: dict[tuple[Any, ...], list[Existing]] = {}
    for record in filter(in_scope, existing):  # a run never touches rows outside its days
        by_key.setdefault(key_of(record.fields, key), []).append(record)

    plan = Plan()
    for k, row in wanted.items():
        matches = by_key.pop(k, [])
        if not matches:
            plan.creates.append({name: value for name, value in row.items() if value is not None})
            continue
        keeper = _keeper(matches, row, in_scope)
        extras = [m.record_id for m in matches if m is not keeper]
        plan.deletes += extras
        plan.duplicates += len(extras)
        change = changed_fields(keeper.fields, row)
        if change:
            plan.updates.append(Update(keeper.record_id, change))
        else:
            plan.unchanged += 1
    may_delete = deletable or (lambda record: True)
    for records in by_key.values():
        plan.deletes += [r.record_id for r in records if may_delete(r)]
    return plan


def _keeper(matches: list[Existing], row: Mapping[str, Any],
            in_scope: Callable[[Existing], bool]) -> Existing:
    """Of the records with one key: one already right, else one in scope, else the first."""
    for record in matches:
        if not changed_fields(record.fields, row):
            return record
    return next((r for r in matches if in_scope(r)), matches[0])
