"""The export run as durable state: starting, pausing and retrying runs, what to submit next,
and what a submission's answer means.

Everything here is a short database transaction over one run; callers (bot/export/steps.py)
hold the run's Redis lock around each decision, so two workers never decide about the same run
at once. Because all state is in the database, a process killed at any point leaves nothing
that the next `plan` cannot pick up: a window claimed for submission whose job died is freed
after a lease, a window whose message never came is exported again after the file timeout, and
a file that arrives twice is recognised by content (bot/export/placement.py).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.export.contract import Answer, Reply
from bot.export.options import RunOptions
from bot.export.windows import Window, next_window
from bot.models import ExportRun, ExportWindow, utcnow

ACTIVE = ("running", "paused")
IN_FLIGHT = ("submitted", "awaiting_file")
OPEN = ("planned", "submitted", "awaiting_file", "downloaded")
DONE = ("verified", "split", "unexportable", "failed")


class RunConflict(RuntimeError):
    """A run is already active (or none is, for resume/retry)."""


# -- runs --------------------------------------------------------------------------------


def create_run(engine: Engine, start: datetime, end: datetime, options: RunOptions) -> int:
    options.plan()  # validates fill, cap and unit before anything is stored
    if end <= start:
        raise ValueError("the range is empty: the end must be after the start")
    with Session(engine) as session, session.begin():
        active = session.scalar(select(ExportRun.id).where(ExportRun.status.in_(ACTIVE)))
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
            .where(ExportRun.status.in_(ACTIVE))
            .order_by(ExportRun.id.desc())
        )


def running_run_id(engine: Engine) -> int | None:
    """The run in status 'running', if any: one that needs the chat polled for its files now."""
    with Session(engine) as session:
        return session.scalar(select(ExportRun.id).where(ExportRun.status == "running").limit(1))


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


def retry_failed(engine: Engine, run_id: int) -> list[int]:
    """Export every failed window of the run again (the chat command and the card's button)."""
    with Session(engine) as session:
        failed = list(
            session.scalars(
                select(ExportWindow.id)
                .where(ExportWindow.run_id == run_id, ExportWindow.state == "failed")
                .order_by(ExportWindow.start_at, ExportWindow.id)
            )
        )
    for window_id in failed:
        retry_window(engine, run_id, window_id)
    return failed


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
        _free_stuck(windows, options, now)
        in_flight = [w for w in windows if w.state in IN_FLIGHT]
        if any(w.serial for w in in_flight):
            return Step([])
        ready = sorted((w for w in windows if _due(w, now)), key=lambda w: w.start_at)
        fresh_wanted = 0
        if any(w.serial for w in ready):
            first = next(w for w in ready if w.serial)
            chosen = _serial_turn(windows, first, bool(in_flight), options, now)
        else:
            slots = options.concurrency - len(in_flight)
            chosen = ready[: max(0, slots)]
            slots -= len(chosen)
            run.count_calls += counted
            if options.count_sizing and sized is None and slots > 0 and run.cursor_at < run.range_end:
                fresh_wanted, slots = slots, 0
            fresh = _fresh_windows(run, options, sized, slots, now)
            session.add_all(fresh)
            chosen += fresh
        for window in chosen:
            set_state(window, "submitted", now)
        run.updated_at = now
        session.flush()
        ids = [w.id for w in chosen]
        if not ids and not in_flight and not fresh_wanted:
            _finish_if_done(session, run, now)
        return Step(ids, fresh_wanted, run.cursor_at, run.range_end, run.density, options)


def _due(window: ExportWindow, now: datetime) -> bool:
    return window.state == "planned" and (window.next_attempt_at is None or window.next_attempt_at <= now)


def _free_stuck(windows: list[ExportWindow], options: RunOptions, now: datetime) -> None:
    """Windows whose completion message never came, or whose submitting job died, go back to planned."""
    for window in windows:
        if window.state == "awaiting_file" and window.submitted_at + options.file_timeout <= now:
            set_state(window, "planned", now, reason="no completion message in time; exporting again")
        elif (
            window.state == "submitted"
            and window.updated_at + timedelta(seconds=options.submit_lease_seconds) <= now
        ):
            set_state(window, "planned", now, reason="submission abandoned (worker stopped); exporting again")


def _serial_turn(
    windows: list[ExportWindow], first: ExportWindow, busy: bool, options: RunOptions, now: datetime
) -> list[ExportWindow]:
    """A window that must go alone (its file could be mistaken for another's) is submitted only
    when nothing else is in flight and no other recent submission can still answer."""
    recent = any(
        w.submitted_at is not None and w.submitted_at + options.file_timeout > now
        for w in windows
        if w.id != first.id and w.state != "downloaded"
    )
    return [] if busy or recent else [first]


def _fresh_windows(
    run: ExportRun, options: RunOptions, sized: list[Window] | None, slots: int, now: datetime
) -> list[ExportWindow]:
    """New windows from the run's cursor: those sized by counting (if they still start at the
    cursor), else sized by density; the cursor moves past each."""
    queued, fresh_windows = list(sized or []), []
    while slots > 0:
        if queued:
            fresh: Window | None = queued.pop(0)
            if fresh is None or fresh.start != run.cursor_at:
                break  # sized from a cursor another step has moved on from
        elif sized:
            break  # only what was sized; the next step sizes more
        else:
            fresh = next_window(run.cursor_at, run.range_end, run.density, options.plan())
        if fresh is None:
            break
        fresh_windows.append(new_window(run.id, fresh, now))
        run.cursor_at = fresh.end
        slots -= 1
    return fresh_windows


def new_window(run_id: int, span: Window, now: datetime, *, parent_id: int | None = None) -> ExportWindow:
    return ExportWindow(
        run_id=run_id,
        parent_id=parent_id,
        start_at=span.start,
        end_at=span.end,
        state="planned",
        attempts=0,
        failures=0,
        serial=False,
        updated_at=now,
    )


def set_state(window: ExportWindow, state: str, now: datetime, *, reason: str | None = None) -> None:
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


# -- submissions -------------------------------------------------------------------------



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
            set_state(window, "awaiting_file", now, reason=None)
            window.reason = None
            run.calls += 1
            return "submitted"
        if reply.answer is Answer.AUTH:
            set_state(window, "planned", now, reason=f"paused: {reply.detail}")
            if run.status == "running":
                run.status, run.pause_reason, run.updated_at = (
                    "paused",
                    f"export auth rejected ({reply.detail})",
                    now,
                )
            return "paused"
        if reply.answer is Answer.BAD_REQUEST:
            set_state(window, "failed", now, reason=f"bad request: {reply.detail}")
            return "failed"
        window.failures += 1
        if window.failures >= options.max_failures:
            reason = f"gave up after {window.failures} failures: {reply.detail}"
            set_state(window, "failed", now, reason=reason)
            return "failed"
        delay = backoff(window.failures, options.backoff_seconds, options.backoff_max_seconds, rng or random)
        window.next_attempt_at = now + timedelta(seconds=delay)
        reason = f"{reply.answer.value}: {reply.detail}; retry in {delay:.1f}s"
        set_state(window, "planned", now, reason=reason)
        return "backoff"


def backoff(failures: int, base: float, cap: float, rng: random.Random | Any) -> float:
    """Exponential backoff with jitter: between half and all of min(cap, base·2^(n−1))."""
    ceiling = min(cap, base * 2 ** (failures - 1))
    return ceiling * (0.5 + 0.5 * rng.random())


def retry_delay(engine: Engine, window_id: int) -> float:
    """Seconds until a backed-off window may be submitted again (plan it then)."""
    with Session(engine) as session:
        window = session.get(ExportWindow, window_id)
        at = window.next_attempt_at if window else None
    return max(0.1, (at - utcnow()).total_seconds() + 0.05) if at else 1.0
