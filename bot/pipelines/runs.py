"""Run rows: start a run, claim it in a worker, keep it alive, store each day's rows, finish it;
find the runs to resume; say where one stands.

A run's life: `queued` → (claimed by a worker) `running` → `succeeded` | `failed`. A transient
failure puts it back to `queued` for a later attempt; a worker that died leaves it `running` with
a heartbeat that stops moving, and the cron re-queues it after PIPELINE_STALE_SECONDS. Claims
are one conditional UPDATE, so two workers never run one run. At most one run per pipeline is
queued or running (a partial unique index): starting another answers RunActive with its id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import Engine, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.models import PIPELINE_TRIGGERS, PipelineRun, PipelineRunDay, utcnow
from bot.pipelines import cadence, schedule, store
from bot.services import Services

log = logging.getLogger(__name__)


class RunActive(RuntimeError):
    """The pipeline already has a queued or running run."""

    def __init__(self, name: str, run_id: int | None) -> None:
        super().__init__(f"pipeline {name} already has run {run_id} queued or running")
        self.run_id = run_id


class RunNotFound(LookupError):
    pass


@dataclass(frozen=True)
class RunDay:
    day: date
    state: str
    rows: list[dict[str, Any]] | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands (the CLI's `pipeline status`, the chat's progress card)."""

    id: int
    pipeline: str
    state: str
    triggered_by: str
    date_from: date
    date_to: date
    days_total: int
    days_fetched: int  # fetched or written
    fetched: int
    created: int
    updated: int
    deleted: int
    calls: int
    attempts: int
    error: str | None
    summary: dict[str, Any] | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    requested_by: str | None
    chat_id: str | None
    message_id: str | None

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed")


def create(engine: Engine, name: str, days: list[date], triggered_by: str, *, requested_by: str | None = None,
           chat_id: str | None = None, message_id: str | None = None) -> int:
    """Record a queued run and its days (one transaction); RunActive if one is already active."""
    if triggered_by not in PIPELINE_TRIGGERS:
        raise ValueError(f"trigger {triggered_by!r} is not one of {PIPELINE_TRIGGERS}")
    if not days:
        raise ValueError("a run covers at least one day")
    try:
        with engine.begin() as conn:
            run_id = conn.execute(insert(PipelineRun).values(
                pipeline=name, date_from=min(days), date_to=max(days), state="queued",
                triggered_by=triggered_by, queued_at=utcnow(), requested_by=requested_by, chat_id=chat_id,
                message_id=message_id,
            ).returning(PipelineRun.id)).scalar_one()
            conn.execute(insert(PipelineRunDay), [{"run_id": run_id, "day": d, "state": "pending"}
                                                  for d in sorted(set(days))])
    except IntegrityError:
        raise RunActive(name, active_run(engine, name)) from None
    return run_id


def active_run(engine: Engine, name: str) -> int | None:
    return active_runs(engine).get(name)


def run_days(services: Services, name: str, dates: date | tuple[date, date] | None,
             now: datetime | None = None) -> list[date]:
    """The days a run covers: the given day or range (inclusive), else the pipeline's default
    (today − lag_days in PIPELINE_TIMEZONE). An unpartitioned pipeline mirrors its whole source
    once, so its run has one day whatever the range."""
    info = store.get(services.engine, name)
    settings = services.settings
    if dates is None:
        today = cadence.local_today(now or utcnow(), settings.pipeline_timezone)
        first = last = today - timedelta(days=info.spec.lag_days)
    elif isinstance(dates, date):
        first = last = dates
    else:
        first, last = dates
    days = cadence.days_between(first, last)
    if not info.spec.partition:
        return [last]
    if len(days) > settings.pipeline_max_days:
        raise ValueError(f"{len(days)} days is more than one run covers (PIPELINE_MAX_DAYS="
                         f"{settings.pipeline_max_days}); split the range")
    return days


def start(services: Services, name: str, dates: date | tuple[date, date] | None = None,
          triggered_by: str = "manual", *, requested_by: str | None = None, chat_id: str | None = None,
          message_id: str | None = None) -> int:
    """Start a run of a pipeline over a day or a range (None: its default day) and queue it.
    Raises PipelineNotFound, RunActive (with the active run's id), ValueError for a bad range."""
    days = run_days(services, name, dates)
    run_id = create(services.engine, name, days, triggered_by, requested_by=requested_by, chat_id=chat_id,
                    message_id=message_id)
    try:
        schedule.enqueue_run(services, run_id)
    except RedisError:  # recorded: the cron re-offers a run left queued (PIPELINE_STALE_SECONDS)
        log.warning("pipeline run recorded but not queued (Redis unavailable)", extra={"run_id": run_id})
    return run_id


def claim(engine: Engine, run_id: int, *, stale_seconds: float, now: datetime | None = None) -> bool:
    """Take the run for this worker: it is queued, or running with a heartbeat older than
    `stale_seconds` (its worker died). Atomic: of two workers, one gets it."""
    now = now or utcnow()
    stale = now - timedelta(seconds=stale_seconds)
    with engine.begin() as conn:
        return conn.execute(update(PipelineRun).where(
            PipelineRun.id == run_id,
            or_(PipelineRun.state == "queued",
                and_(PipelineRun.state == "running",
                     or_(PipelineRun.heartbeat_at.is_(None), PipelineRun.heartbeat_at < stale))),
        ).values(state="running", attempts=PipelineRun.attempts + 1, heartbeat_at=now, not_before=None,
                 started_at=func.coalesce(PipelineRun.started_at, now))).rowcount == 1


def heartbeat(engine: Engine, run_id: int, **counts: int) -> None:
    """The run is alive (and, optionally, its counts so far)."""
    with engine.begin() as conn:
        conn.execute(update(PipelineRun).where(PipelineRun.id == run_id, PipelineRun.state == "running")
                     .values(heartbeat_at=utcnow(), **counts))


def days(engine: Engine, run_id: int) -> list[RunDay]:
    with Session(engine) as session:
        rows = session.scalars(select(PipelineRunDay).where(PipelineRunDay.run_id == run_id)
                               .order_by(PipelineRunDay.day)).all()
        return [RunDay(r.day, r.state, json.loads(r.fetched_rows) if r.fetched_rows is not None else None,
                       json.loads(r.detail) if r.detail else {}) for r in rows]


def store_day(engine: Engine, run_id: int, day: date, rows: list[dict[str, Any]],
              detail: dict[str, Any]) -> None:
    """A day's rows, as cells, kept until the run is written: a resumed run does not fetch it again."""
    with engine.begin() as conn:
        conn.execute(update(PipelineRunDay).where(PipelineRunDay.run_id == run_id, PipelineRunDay.day == day)
                     .values(state="fetched", row_count=len(rows), fetched_at=utcnow(),
                             fetched_rows=json.dumps(rows, ensure_ascii=False),
                             detail=json.dumps(detail, ensure_ascii=False)))
        conn.execute(update(PipelineRun).where(PipelineRun.id == run_id).values(heartbeat_at=utcnow()))


def mark_written(engine: Engine, run_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(PipelineRunDay).where(PipelineRunDay.run_id == run_id).values(state="written"))


def succeed(engine: Engine, run_id: int, counts: dict[str, int], summary: dict[str, Any]) -> None:
    """Done; the fetched rows are dropped (they served resuming; a failed run keeps them to look at)."""
    _finish(engine, run_id, "succeeded", counts, summary=json.dumps(summary, ensure_ascii=False), error=None)
    with engine.begin() as conn:
        conn.execute(update(PipelineRunDay).where(PipelineRunDay.run_id == run_id).values(fetched_rows=None))


def fail(engine: Engine, run_id: int, error: str, counts: dict[str, int] | None = None,
         summary: dict[str, Any] | None = None) -> None:
    _finish(engine, run_id, "failed", counts or {}, error=error[:4000],
            summary=json.dumps(summary, ensure_ascii=False) if summary is not None else None)


def _finish(engine: Engine, run_id: int, state: str, counts: dict[str, int], **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(PipelineRun).where(PipelineRun.id == run_id)
                     .values(state=state, finished_at=utcnow(), heartbeat_at=utcnow(), **counts, **values))


def requeue(engine: Engine, run_id: int, error: str, *, delay_seconds: float = 0.0,
            count_attempt: bool = True) -> None:
    """Back to `queued` after a transient failure (its fetched days are kept), its job due in
    `delay_seconds` — until then the run is waiting, not lost; a wait for a busy table does not
    count as an attempt."""
    now = utcnow()
    values: dict[str, Any] = {"state": "queued", "error": error[:4000], "heartbeat_at": now,
                              "not_before": now + timedelta(seconds=delay_seconds)}
    if not count_attempt:
        values["attempts"] = PipelineRun.attempts - 1
    with engine.begin() as conn:
        conn.execute(update(PipelineRun).where(PipelineRun.id == run_id, PipelineRun.state == "running")
                     .values(**values))


def resumable(engine: Engine, *, stale_seconds: float, now: datetime | None = None) -> list[int]:
    """Runs whose job seems lost: running with a heartbeat older than `stale_seconds` (the
    worker died), or queued that long without being claimed (the job never reached Redis) — for
    a retry, counted from when its delayed job was due (`not_before`; claiming clears it)."""
    stale = (now or utcnow()) - timedelta(seconds=stale_seconds)
    quiet = func.coalesce(PipelineRun.not_before, PipelineRun.heartbeat_at, PipelineRun.queued_at) < stale
    with engine.connect() as conn:
        return list(conn.scalars(select(PipelineRun.id).where(
            PipelineRun.state.in_(("queued", "running")), quiet).order_by(PipelineRun.id)))


def status(engine: Engine, run_id: int) -> RunStatus:
    with Session(engine) as session:
        run = session.get(PipelineRun, run_id)
        if run is None:
            raise RunNotFound(f"no pipeline run {run_id}")
        states = session.execute(select(PipelineRunDay.state, func.count())
                                 .where(PipelineRunDay.run_id == run_id).group_by(PipelineRunDay.state)).all()
        return _status(run, {s: n for s, n in states})


def recent(engine: Engine, name: str | None = None, limit: int = 20) -> list[RunStatus]:
    """The latest runs, newest first (of one pipeline, or all)."""
    with Session(engine) as session:
        query = select(PipelineRun).order_by(PipelineRun.id.desc()).limit(limit)
        if name is not None:
            query = query.where(PipelineRun.pipeline == name)
        return _statuses(session, session.scalars(query).all())


def by_ids(engine: Engine, run_ids: Iterable[int]) -> dict[int, RunStatus]:
    """The runs of these ids that still exist (retention may have trimmed an old one), by id."""
    with Session(engine) as session:
        found = session.scalars(select(PipelineRun).where(PipelineRun.id.in_(list(run_ids)))).all()
        return {s.id: s for s in _statuses(session, found)}


def active_runs(engine: Engine) -> dict[str, int]:
    """Each pipeline's queued or running run (at most one each), by pipeline name."""
    with engine.connect() as conn:
        return {name: run_id for name, run_id in conn.execute(
            select(PipelineRun.pipeline, PipelineRun.id).where(PipelineRun.state.in_(("queued", "running"))))}


def _statuses(session: Session, found: Sequence[PipelineRun]) -> list[RunStatus]:
    counts: dict[int, dict[str, int]] = {r.id: {} for r in found}
    for run_id, state, n in session.execute(
            select(PipelineRunDay.run_id, PipelineRunDay.state, func.count())
            .where(PipelineRunDay.run_id.in_(list(counts)))
            .group_by(PipelineRunDay.run_id, PipelineRunDay.state)):
        counts[run_id][state] = n
    return [_status(r, counts[r.id]) for r in found]


def _status(run: PipelineRun, day_states: dict[str, int]) -> RunStatus:
    return RunStatus(
        id=run.id, pipeline=run.pipeline, state=run.state, triggered_by=run.triggered_by,
        date_from=run.date_from, date_to=run.date_to, days_total=sum(day_states.values()),
        days_fetched=day_states.get("fetched", 0) + day_states.get("written", 0),
        fetched=run.fetched, created=run.created, updated=run.updated, deleted=run.deleted, calls=run.calls,
        attempts=run.attempts, error=run.error, summary=json.loads(run.summary) if run.summary else None,
        queued_at=run.queued_at, started_at=run.started_at, finished_at=run.finished_at,
        heartbeat_at=run.heartbeat_at, requested_by=run.requested_by, chat_id=run.chat_id,
        message_id=run.message_id)


def start_due(services: Services, now: datetime | None = None) -> dict[str, list[int]]:
    """The cron's tick: start a run for every due pipeline (one that still has an active run
    waits for the next tick), and re-queue runs whose job was lost."""
    now = now or utcnow()
    started: list[int] = []
    for due in schedule.due_pipelines(services, now):
        try:
            started.append(create(services.engine, due.name, cadence.days_between(due.first, due.last),
                                  "schedule"))
        except RunActive:
            continue
        store.mark_scheduled(services.engine, due.name, due.slot)
        schedule.enqueue_run(services, started[-1])
    resumed = resumable(services.engine, stale_seconds=services.settings.pipeline_stale_seconds, now=now)
    for run_id in resumed:
        schedule.enqueue_run(services, run_id)
    return {"started": started, "resumed": resumed}
