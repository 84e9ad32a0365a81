"""The outbox's state changes: claim due rows (per-row order, safe under concurrency), record
what Coze answered, back off, dead-letter, re-drive, report (bot/retention.py trims delivered rows).

A row is claimable when it is pending, due, its template is enabled, and no earlier row for the
same table row (template, row_key) is still undelivered — so one table row's changes reach Coze
in the order they were made — across primary key changes too (`old_row_key`) — while different
rows go in parallel. PostgreSQL claims with `FOR UPDATE SKIP LOCKED`; SQLite's single writer
makes the one UPDATE … RETURNING atomic.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, Exists, and_, bindparam, func, insert, or_, select, update

from bot.coze.client import ErrorKind, Outcome
from bot.models import CozeDelivery, CozeOutbox, CozeTemplate

OUTBOX = CozeOutbox.__table__
DELIVERIES = CozeDelivery.__table__
TEMPLATES = CozeTemplate.__table__
PERMANENT = {ErrorKind.BAD_REQUEST}  # retrying cannot help: dead-letter at once
UNDELIVERED = ("pending", "claimed", "dead")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Claimed:
    id: int
    template_id: int
    op: str
    row_key: str
    old_values: str | None
    new_values: str | None
    attempts: int
    sync_id: int | None


def claim(engine: Engine, limit: int) -> tuple[str, list[Claimed]]:
    token = uuid.uuid4().hex
    now = utcnow()
    earlier = OUTBOX.alias("earlier")

    def waits_for(*match) -> Exists:
        return (
            select(earlier.c.id)
            .where(
                earlier.c.template_id == OUTBOX.c.template_id,
                *match,
                earlier.c.id < OUTBOX.c.id,
                earlier.c.status.in_(UNDELIVERED),
            )
            .exists()
        )

    # Same key; or, across a key change (an UPDATE … SET id = …), the old key's earlier rows, and
    # for a row of a key that an earlier update left, that update. Each EXISTS has its index.
    blocked = or_(
        waits_for(earlier.c.row_key == OUTBOX.c.row_key),
        waits_for(OUTBOX.c.old_row_key.is_not(None), earlier.c.row_key == OUTBOX.c.old_row_key),
        waits_for(earlier.c.old_row_key == OUTBOX.c.row_key),
    )
    enabled = select(TEMPLATES.c.id).where(TEMPLATES.c.enabled.is_(True))
    candidates = (
        select(OUTBOX.c.id)
        .where(
            OUTBOX.c.status == "pending",
            OUTBOX.c.next_attempt_at <= now,
            ~blocked,
            OUTBOX.c.template_id.in_(enabled),
        )
        .order_by(OUTBOX.c.id)
        .limit(limit)
    )
    if engine.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=OUTBOX)
    statement = (
        update(OUTBOX)
        .where(OUTBOX.c.id.in_(candidates), OUTBOX.c.status == "pending")
        .values(status="claimed", claimed_at=now, claim_token=token)
        .returning(
            OUTBOX.c.id,
            OUTBOX.c.template_id,
            OUTBOX.c.op,
            OUTBOX.c.row_key,
            OUTBOX.c.old_values,
            OUTBOX.c.new_values,
            OUTBOX.c.attempts,
            OUTBOX.c.sync_id,
        )
    )
    with engine.begin() as connection:
        rows = connection.execute(statement).all()
    return token, sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


def free_stale_claims(engine: Engine, lease_seconds: float) -> int:
    """Claims whose worker died (kill -9) become pending again; the call may have happened, so
    delivery is at least once."""
    cutoff = utcnow() - timedelta(seconds=lease_seconds)
    with engine.begin() as connection:
        return connection.execute(
            update(OUTBOX)
            .where(OUTBOX.c.status == "claimed", OUTBOX.c.claimed_at < cutoff)
            .values(status="pending", claim_token=None)
        ).rowcount


def backoff_seconds(attempts: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff (attempts counts failures so far, ≥ 1)."""
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Result:
    row: Claimed
    template_uuid: str
    workflow_id: str
    outcome: Outcome


def record(
    engine: Engine, token: str, results: Iterable[Result], *, max_attempts: int, base: float, cap: float
) -> dict[str, int]:
    """Write every answer of one round in one transaction: outbox state, delivery log, and each
    template's status (from its latest answer)."""
    now = utcnow()
    delivered, retry, dead, log = [], [], [], []
    latest: dict[int, tuple[ErrorKind | None, str | None]] = {}
    for result in results:
        row, outcome = result.row, result.outcome
        attempt = row.attempts + 1
        latest[row.template_id] = (outcome.kind, None if outcome.ok else _error_text(outcome))
        log.append(
            {
                "outbox_id": row.id,
                "template_uuid": result.template_uuid,
                "workflow_id": result.workflow_id,
                "op": row.op,
                "row_key": row.row_key,
                "attempt": attempt,
                "ok": outcome.ok,
                "error_kind": outcome.kind.value if outcome.kind else None,
                "error_code": outcome.code,
                "error": outcome.error,
                "execute_id": outcome.execute_id,
                "debug_url": outcome.debug_url,
                "logid": outcome.logid,
                "duration_ms": outcome.duration_ms,
                "created_at": now,
            }
        )
        if outcome.ok:
            delivered.append({"oid": row.id})
        elif attempt >= max_attempts or outcome.kind in PERMANENT:
            dead.append({"oid": row.id, "error": _error_text(outcome)})
        else:
            wait = backoff_seconds(attempt, base, cap)
            retry.append({"oid": row.id, "error": _error_text(outcome), "due": now + timedelta(seconds=wait)})
    mine = and_(OUTBOX.c.id == bindparam("oid"), OUTBOX.c.claim_token == token)
    with engine.begin() as connection:
        if delivered:
            connection.execute(
                update(OUTBOX)
                .where(mine)
                .values(
                    status="delivered",
                    delivered_at=now,
                    attempts=OUTBOX.c.attempts + 1,
                    last_error=None,
                    claim_token=None,
                ),
                delivered,
            )
        if retry:
            connection.execute(
                update(OUTBOX)
                .where(mine)
                .values(
                    status="pending",
                    attempts=OUTBOX.c.attempts + 1,
                    last_error=bindparam("error"),
                    next_attempt_at=bindparam("due"),
                    claim_token=None,
                ),
                retry,
            )
        if dead:
            connection.execute(
                update(OUTBOX)
                .where(mine)
                .values(
                    status="dead",
                    attempts=OUTBOX.c.attempts + 1,
                    last_error=bindparam("error"),
                    claim_token=None,
                ),
                dead,
            )
        if log:
            connection.execute(insert(DELIVERIES), log)
        for template_id, (kind, error) in latest.items():
            values: dict = {"status": _status(kind), "status_detail": error, "updated_at": now}
            if kind is None:
                values["last_sync_time"] = now
            connection.execute(update(TEMPLATES).where(TEMPLATES.c.id == template_id).values(**values))
    return {"delivered": len(delivered), "retrying": len(retry), "dead": len(dead)}


def _status(kind: ErrorKind | None) -> str:
    from bot.coze.client import STATUS_FOR

    return STATUS_FOR[kind]


def _error_text(outcome: Outcome) -> str:
    code = f" (code {outcome.code})" if outcome.code is not None else ""
    return f"{outcome.kind.value if outcome.kind else 'error'}{code}: {outcome.error or ''}"[:1000]


def redrive(engine: Engine, template_id: int | None = None, ids: list[int] | None = None) -> int:
    """Dead letters become pending again with a fresh attempt budget, in their original order."""
    query = update(OUTBOX).where(OUTBOX.c.status == "dead")
    if template_id is not None:
        query = query.where(OUTBOX.c.template_id == template_id)
    if ids:
        query = query.where(OUTBOX.c.id.in_(ids))
    with engine.begin() as connection:
        return connection.execute(
            query.values(status="pending", attempts=0, next_attempt_at=utcnow())
        ).rowcount


def next_due(engine: Engine) -> datetime | None:
    """When the earliest pending row is due (naive UTC, like utcnow())."""
    with engine.connect() as connection:
        due = connection.scalar(
            select(func.min(OUTBOX.c.next_attempt_at)).where(OUTBOX.c.status == "pending")
        )
    if isinstance(due, str):  # SQLite hands an aggregate back untyped
        due = datetime.fromisoformat(due)
    return due.astimezone(UTC).replace(tzinfo=None) if due and due.tzinfo else due


def counts(engine: Engine, template_id: int | None = None) -> dict[str, int]:
    query = select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status)
    if template_id is not None:
        query = query.where(OUTBOX.c.template_id == template_id)
    with engine.connect() as connection:
        found = dict(connection.execute(query).all())
    return {status: int(found.get(status, 0)) for status in ("pending", "claimed", "delivered", "dead")}

