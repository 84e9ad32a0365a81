"""The export run as durable state: what to submit next, what a submission's answer means,
and where an arriving file goes.

Everything here is a short database transaction over one run; callers (the RQ jobs in
jobs/export.py) hold the run's Redis lock around each call, so two workers never decide about
the same run at once. Because all state is in the database, a process killed at any point
leaves nothing that the next `plan` cannot pick up: a window claimed for submission whose job
died is freed after a lease, a window whose message never came is exported again after the
file timeout, and a file that arrives twice is recognised by content.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.export.contract import Answer, Reply
from bot.export.matching import Match, OpenWindow, Verdict, match_file
from bot.export.windows import Outcome, PlanOptions, Window, judge, next_window, smoothed
from bot.models import ExportFile, ExportRun, ExportWindow, utcnow

IN_FLIGHT = ("submitted", "awaiting_file")
OPEN = ("planned", "submitted", "awaiting_file", "downloaded")
DONE = ("verified", "split", "unexportable", "failed")


class RunConflict(RuntimeError):
    """A run is already active (or none is, for resume/retry)."""


@dataclass(frozen=True)
class RunOptions:
    cap: int = 1000
    initial_days: int = 7
    fill: float = 0.9
    finer_bounds: bool = False
    keyword: str = ""
    search_tab: int = 0
    concurrency: int = 3
    max_failures: int = 8
    backoff_seconds: float = 5.0
    backoff_max_seconds: float = 600.0
    file_timeout_seconds: float = 900.0
    count_sizing: bool = False  # size windows with the list endpoint's totals
    submit_lease_seconds: float = 120.0  # a window claimed this long ago by a job that died is freed

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RunOptions:
        values = {
            "cap": settings.export_cap,
            "initial_days": settings.export_initial_days,
            "fill": settings.export_fill,
            "finer_bounds": settings.export_finer_bounds,
            "keyword": settings.export_keyword,
            "search_tab": settings.export_search_tab,
            "concurrency": settings.export_concurrency,
            "max_failures": settings.export_max_failures,
            "backoff_seconds": settings.export_backoff_seconds,
            "backoff_max_seconds": settings.export_backoff_max_seconds,
            "file_timeout_seconds": settings.export_file_timeout_seconds,
            "submit_lease_seconds": settings.export_submit_lease_seconds,
            "count_sizing": bool(settings.export_count_path),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> RunOptions:
        return cls(**json.loads(text))

    def plan(self) -> PlanOptions:
        unit = timedelta(seconds=1) if self.finer_bounds else timedelta(days=1)
        return PlanOptions(
            cap=self.cap, initial=timedelta(days=self.initial_days), fill=self.fill, min_span=unit
        )

    def filters(self) -> dict[str, Any]:
        return {"keyword": self.keyword, "searchTabEnumCode": self.search_tab}

    @property
    def file_timeout(self) -> timedelta:
        return timedelta(seconds=self.file_timeout_seconds)


# -- runs --------------------------------------------------------------------------------


def create_run(engine: Engine, start: datetime, end: datetime, options: RunOptions) -> int:
    options.plan()  # validates fill, cap and unit before anything is stored
    if end <= start:
        raise ValueError("the range is empty: the end must be after the start")
    with Session(engine) as session, session.begin():
        active = session.scalar(select(ExportRun.id).where(ExportRun.status.in_(("running", "paused"))))
        if active is not None:
            raise RunConflict(f"run {active} is still active: `export resume` or `export cancel` it first")
        run = ExportRun(
            status="running",
            range_start=start,
            range_end=end,
            cursor_at=start,
            options=json.dumps(asdict(options)),
            calls=0,
            updated_at=utcnow(),
        )
        session.add(run)
        session.flush()
        return run.id


def active_run_id(engine: Engine) -> int | None:
    with Session(engine) as session:
        return session.scalar(
            select(ExportRun.id)
            .where(ExportRun.status.in_(("running", "paused")))
            .order_by(ExportRun.id.desc())
        )


def latest_run_id(engine: Engine) -> int | None:
    with Session(engine) as session:
        return session.scalar(select(ExportRun.id).order_by(ExportRun.id.desc()))


def pause(engine: Engine, run_id: int, reason: str) -> None:
    with Session(engine) as session, session.begin():
        run = session.get_one(ExportRun, run_id)
        if run.status == "running":
            run.status, run.pause_reason, run.updated_at = "paused", reason, utcnow()


def resume(engine: Engine, run_id: int) -> None:
    with Session(engine) as session, session.begin():
        run = session.get_one(ExportRun, run_id)
        if run.status in ("paused", "running"):
            run.status, run.pause_reason, run.updated_at = "running", None, utcnow()
        else:
            raise RunConflict(f"run {run_id} is {run.status}")


def cancel(engine: Engine, run_id: int) -> None:
    with Session(engine) as session, session.begin():
        run = session.get_one(ExportRun, run_id)
        run.status, run.finished_at, run.updated_at = "cancelled", utcnow(), utcnow()


def retry_window(engine: Engine, run_id: int, window_id: int) -> None:
    """Export a failed or unexportable window again (and reopen its run)."""
    with Session(engine) as session, session.begin():
        window = session.get(ExportWindow, window_id)
        if window is None or window.run_id != run_id:
            raise RunConflict(f"window {window_id} is not part of run {run_id}")
        if window.state not in ("failed", "unexportable", "planned", "awaiting_file"):
            raise RunConflict(
                f"window {window_id} is {window.state}; only failed, unexportable or waiting "
                "windows can be retried"
            )
        window.state, window.failures, window.next_attempt_at, window.reason = "planned", 0, None, None
        window.updated_at = utcnow()
        run = session.get_one(ExportRun, run_id)
        if run.status in ("done", "paused"):
            run.status, run.finished_at, run.pause_reason = "running", None, None


# -- planning ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """What one planning step claimed, and how much fresh ground it still wants sized by counting."""

    ids: list[int]
    fresh_wanted: int = 0
    cursor: datetime | None = None
    end: datetime | None = None
    density: float | None = None
    options: RunOptions | None = None


def plan(
    engine: Engine,
    run_id: int,
    now: datetime | None = None,
    *,
    sized: list[Window] | None = None,
    counted: int = 0,
) -> Step:
    """One scheduling step: free stuck windows, then claim the windows to submit now (split
    parts and retries first, then fresh ground). Fresh ground is sized by the density seen so
    far — or, with count sizing, left for the caller to size by counting (outside the run's
    lock) and handed back in `sized` (an empty list: counting failed, use density)."""
    now = now or utcnow()
    with Session(engine) as session, session.begin():
        run = session.get(ExportRun, run_id)
        if run is None or run.status != "running":
            return Step([])
        options = RunOptions.from_json(run.options)
        windows = list(
            session.scalars(
                select(ExportWindow).where(ExportWindow.run_id == run_id, ExportWindow.state.in_(OPEN))
            )
        )
        for window in windows:
            if window.state == "awaiting_file" and window.submitted_at + options.file_timeout <= now:
                _set(window, "planned", now, reason="no completion message in time; exporting again")
            elif (
                window.state == "submitted"
                and window.updated_at + timedelta(seconds=options.submit_lease_seconds) <= now
            ):
                _set(window, "planned", now, reason="submission abandoned (worker stopped); exporting again")
        in_flight = [w for w in windows if w.state in IN_FLIGHT]
        if any(w.serial for w in in_flight):
            return Step([])
        ready = sorted(
            (
                w
                for w in windows
                if w.state == "planned" and (w.next_attempt_at is None or w.next_attempt_at <= now)
            ),
            key=lambda w: w.start_at,
        )
        serial = [w for w in ready if w.serial]
        chosen: list[ExportWindow] = []
        fresh_wanted = 0
        if serial:
            recent = any(
                w.submitted_at is not None and w.submitted_at + options.file_timeout > now
                for w in windows
                if w.id != serial[0].id and w.state != "downloaded"
            )
            if not in_flight and not recent:
                chosen.append(serial[0])
        else:
            slots = options.concurrency - len(in_flight)
            chosen.extend(ready[: max(0, slots)])
            slots -= len(chosen)
            plan_options = options.plan()
            run.count_calls += counted
            queued = list(sized or [])
            if options.count_sizing and sized is None and slots > 0 and run.cursor_at < run.range_end:
                fresh_wanted = slots
                slots = 0
            while slots > 0:
                if queued:
                    fresh: Window | None = queued.pop(0)
                    if fresh is None or fresh.start != run.cursor_at:
                        break  # sized from a cursor another step has moved on from
                elif sized:
                    break  # only what was sized; the next step sizes more
                else:
                    fresh = next_window(run.cursor_at, run.range_end, run.density, plan_options)
                if fresh is None:
                    break
                window = ExportWindow(
                    run_id=run_id,
                    start_at=fresh.start,
                    end_at=fresh.end,
                    state="planned",
                    attempts=0,
                    failures=0,
                    serial=False,
                    updated_at=now,
                )
                session.add(window)
                run.cursor_at = fresh.end
                chosen.append(window)
                slots -= 1
        for window in chosen:
            _set(window, "submitted", now)
        run.updated_at = now
        session.flush()
        ids = [w.id for w in chosen]
        if not ids and not in_flight and not fresh_wanted:
            _finish_if_done(session, run, now)
        return Step(ids, fresh_wanted, run.cursor_at, run.range_end, run.density, options)


def _set(window: ExportWindow, state: str, now: datetime, *, reason: str | None = None) -> None:
    window.state, window.updated_at = state, now
    if reason is not None:
        window.reason = reason


def _finish_if_done(session: Session, run: ExportRun, now: datetime) -> None:
    if run.cursor_at < run.range_end:
        return
    still_open = session.scalar(
        select(func.count())
        .select_from(ExportWindow)
        .where(ExportWindow.run_id == run.id, ExportWindow.state.in_(OPEN))
    )
    if still_open == 0:
        run.status, run.finished_at, run.updated_at = "done", now, now


@dataclass(frozen=True)
class Submission:
    window_id: int
    run_id: int
    start: datetime
    end: datetime
    options: RunOptions


def claimed(engine: Engine, window_id: int) -> Submission | None:
    """The window a submit job should send, if it is still claimed for submission and its run runs."""
    with Session(engine) as session:
        window = session.get(ExportWindow, window_id)
        if window is None or window.state != "submitted":
            return None
        run = session.get_one(ExportRun, window.run_id)
        if run.status != "running":
            return None
        return Submission(
            window.id, run.id, window.start_at, window.end_at, RunOptions.from_json(run.options)
        )


def touch(engine: Engine, window_id: int) -> None:
    """Keep a claimed window's lease while its submission waits for a rate-limit slot."""
    with Session(engine) as session, session.begin():
        window = session.get(ExportWindow, window_id)
        if window is not None and window.state == "submitted":
            window.updated_at = utcnow()


def record_submission(
    engine: Engine,
    window_id: int,
    reply: Reply,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> str:
    """Apply the endpoint's answer to a claimed window: what happened, in a word."""
    now = now or utcnow()
    with Session(engine) as session, session.begin():
        window = session.get_one(ExportWindow, window_id)
        if window.state != "submitted":
            return "stale"
        run = session.get_one(ExportRun, window.run_id)
        options = RunOptions.from_json(run.options)
        if reply.answer is Answer.OK:
            window.attempts += 1
            window.failures, window.submitted_at, window.next_attempt_at = 0, now, None
            _set(window, "awaiting_file", now, reason=None)
            window.reason = None
            run.calls += 1
            return "submitted"
        if reply.answer is Answer.AUTH:
            _set(window, "planned", now, reason=f"paused: {reply.detail}")
            if run.status == "running":
                run.status, run.pause_reason, run.updated_at = (
                    "paused",
                    f"export auth rejected ({reply.detail})",
                    now,
                )
            return "paused"
        if reply.answer is Answer.BAD_REQUEST:
            _set(window, "failed", now, reason=f"bad request: {reply.detail}")
            return "failed"
        window.failures += 1
        if window.failures >= options.max_failures:
            _set(window, "failed", now, reason=f"gave up after {window.failures} failures: {reply.detail}")
            return "failed"
        delay = backoff(window.failures, options.backoff_seconds, options.backoff_max_seconds, rng or random)
        window.next_attempt_at = now + timedelta(seconds=delay)
        _set(window, "planned", now, reason=f"{reply.answer.value}: {reply.detail}; retry in {delay:.1f}s")
        return "backoff"


def backoff(failures: int, base: float, cap: float, rng: random.Random | Any) -> float:
    """Exponential backoff with jitter: between half and all of min(cap, base·2^(n−1))."""
    ceiling = min(cap, base * 2 ** (failures - 1))
    return ceiling * (0.5 + 0.5 * rng.random())


# -- files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    file_state: str
    window_id: int | None = None
    outcome: Outcome | None = None
    window: tuple[datetime, datetime] | None = None
    candidates: tuple[int, ...] = ()


def place_file(engine: Engine, file_id: int, now: datetime | None = None) -> Placement:
    """Decide where a downloaded file belongs and what it means for its window."""
    now = now or utcnow()
    with Session(engine) as session, session.begin():
        record = session.get_one(ExportFile, file_id)
        if record.state != "downloaded":
            return Placement(record.state, record.window_id)
        twin = session.scalar(
            select(ExportFile.id).where(
                ExportFile.sha256 == record.sha256, ExportFile.state == "matched", ExportFile.id != record.id
            )
        )
        if twin is not None and record.rows:
            record.state, record.updated_at = "duplicate", now
            record.last_error = f"same content as file {twin}"
            return Placement("duplicate")
        run_id = session.scalar(
            select(ExportRun.id)
            .where(ExportRun.status.in_(("running", "paused")))
            .order_by(ExportRun.id.desc())
        )
        windows = (
            []
            if run_id is None
            else list(
                session.scalars(
                    select(ExportWindow).where(
                        ExportWindow.run_id == run_id,
                        ExportWindow.state.in_(("planned", "submitted", "awaiting_file")),
                        ExportWindow.attempts > 0,
                    )
                )
            )
        )
        options = RunOptions.from_json(session.get_one(ExportRun, run_id).options) if run_id else RunOptions()
        found: Match = match_file(
            record.rows or 0,
            record.min_created,
            record.max_created,
            record.message_at,
            [OpenWindow(w.id, w.start_at, w.end_at, w.submitted_at) for w in windows],
            file_timeout=options.file_timeout,
        )
        if found.verdict is Verdict.STRAY:
            record.state, record.updated_at = "stray", now
            return Placement("stray")
        if found.verdict is Verdict.AMBIGUOUS:
            record.state, record.updated_at = "ambiguous", now
            record.last_error = f"could be the file of windows {list(found.candidates)}"
            for window in windows:
                if window.id in found.candidates:
                    window.serial = True
                    if window.state in IN_FLIGHT:
                        _set(window, "planned", now, reason="an empty file could be its; exporting it alone")
            return Placement("ambiguous", candidates=found.candidates)
        window = next(w for w in windows if w.id == found.window_id)
        run = session.get_one(ExportRun, window.run_id)
        span = Window(window.start_at, window.end_at)
        outcome, parts = judge(
            span,
            record.rows or 0,
            options.plan(),
            first_created=record.min_created,
            last_created=record.max_created,
        )
        record.state, record.window_id, record.updated_at = "matched", window.id, now
        window.rows, window.file_id = record.rows, record.id
        if outcome is Outcome.ACCEPTED:
            _set(window, "verified", now, reason=None)
            run.density = smoothed(run.density, span, record.rows or 0, options.plan())
        elif outcome is Outcome.SPLIT:
            _set(window, "split", now, reason=f"{record.rows} rows: at the cap, may be truncated; split")
            for part in parts:
                session.add(
                    ExportWindow(
                        run_id=run.id,
                        parent_id=window.id,
                        start_at=part.start,
                        end_at=part.end,
                        state="planned",
                        attempts=0,
                        failures=0,
                        serial=False,
                        updated_at=now,
                    )
                )
        else:
            _set(
                window,
                "unexportable",
                now,
                reason=f"{record.rows} rows in the smallest window the endpoint takes; not exported in full",
            )
        run.updated_at = now
        return Placement("matched", window.id, outcome, (window.start_at, window.end_at))


# -- status ------------------------------------------------------------------------------


def progress(engine: Engine, run_id: int) -> dict[str, Any]:
    """Figures for `export status` and the progress bar (plain JSON types)."""
    with Session(engine) as session:
        run = session.get_one(ExportRun, run_id)
        windows = list(
            session.scalars(
                select(ExportWindow)
                .where(ExportWindow.run_id == run_id)
                .order_by(ExportWindow.start_at, ExportWindow.id)
            )
        )
    by_state: dict[str, int] = {}
    for window in windows:
        by_state[window.state] = by_state.get(window.state, 0) + 1
    total_span = (run.range_end - run.range_start).total_seconds()
    covered = sum(
        (w.end_at - w.start_at).total_seconds() for w in windows if w.state in ("verified", "unexportable")
    )
    fraction = min(1.0, covered / total_span) if total_span else 1.0
    elapsed = ((run.finished_at or utcnow()) - run.created_at).total_seconds()
    eta = None if fraction <= 0 or run.status != "running" else elapsed * (1 - fraction) / fraction
    return {
        "run": run.id,
        "status": run.status,
        "pause_reason": run.pause_reason,
        "range": [run.range_start.isoformat(sep=" "), run.range_end.isoformat(sep=" ")],
        "cursor": run.cursor_at.isoformat(sep=" "),
        "calls": run.calls,
        "count_calls": run.count_calls,
        "records": sum(w.rows or 0 for w in windows if w.state == "verified"),
        "windows": by_state,
        "windows_done": sum(by_state.get(s, 0) for s in ("verified", "unexportable", "failed")),
        "fraction": round(fraction, 4),
        "eta_seconds": None if eta is None else round(eta),
        "elapsed_seconds": round(elapsed),
        "problems": [
            {
                "window": w.id,
                "start": w.start_at.isoformat(sep=" "),
                "end": w.end_at.isoformat(sep=" "),
                "state": w.state,
                "reason": w.reason,
            }
            for w in windows
            if w.state in ("failed", "unexportable")
        ],
    }


def window_list(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    with Session(engine) as session:
        rows = session.execute(
            select(ExportWindow, ExportFile.path)
            .outerjoin(ExportFile, ExportFile.id == ExportWindow.file_id)
            .where(ExportWindow.run_id == run_id)
            .order_by(ExportWindow.start_at, ExportWindow.id)
        ).all()
    return [
        {
            "id": w.id,
            "start": w.start_at.isoformat(sep=" "),
            "end": w.end_at.isoformat(sep=" "),
            "state": w.state,
            "attempts": w.attempts,
            "rows": w.rows,
            "file": path,
            "reason": w.reason,
        }
        for w, path in rows
    ]
