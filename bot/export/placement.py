"""Where an arriving export file belongs, and what it means for its window: verified, split
(at the cap, maybe truncated), unexportable, a duplicate of a matched file, a stray, or
ambiguous (then its candidate windows are exported again one at a time)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.export.matching import Match, OpenWindow, Verdict, match_file
from bot.export.options import RunOptions
from bot.export.runner import ACTIVE, IN_FLIGHT, new_window, set_state
from bot.export.windows import Outcome, Window, judge, smoothed
from bot.models import ExportFile, ExportRun, ExportWindow, utcnow


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
        twin = _matched_twin(session, record)
        if twin is not None and record.rows:
            record.state, record.updated_at = "duplicate", now
            record.last_error = f"same content as file {twin}"
            return Placement("duplicate")
        run = session.scalar(
            select(ExportRun).where(ExportRun.status.in_(ACTIVE)).order_by(ExportRun.id.desc())
        )
        windows = _submitted_windows(session, run)
        options = RunOptions.from_json(run.options) if run else RunOptions()
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
            _one_at_a_time(record, windows, found.candidates, now)
            return Placement("ambiguous", candidates=found.candidates)
        assert run is not None  # a match needs a window, and windows need a run
        window = next(w for w in windows if w.id == found.window_id)
        outcome = _judge(session, run, window, record, options, now)
        return Placement("matched", window.id, outcome, (window.start_at, window.end_at))


def _matched_twin(session: Session, record: ExportFile) -> int | None:
    """A file with the same content already matched to a window (the message came twice)."""
    return session.scalar(
        select(ExportFile.id).where(
            ExportFile.sha256 == record.sha256, ExportFile.state == "matched", ExportFile.id != record.id
        )
    )


def _submitted_windows(session: Session, run: ExportRun | None) -> list[ExportWindow]:
    """The run's windows a file could belong to: submitted at least once and not yet settled."""
    if run is None:
        return []
    return list(
        session.scalars(
            select(ExportWindow).where(
                ExportWindow.run_id == run.id,
                ExportWindow.state.in_(("planned", "submitted", "awaiting_file")),
                ExportWindow.attempts > 0,
            )
        )
    )


def _one_at_a_time(
    record: ExportFile, windows: list[ExportWindow], candidates: tuple[int, ...], now: datetime
) -> None:
    """An empty file that could be any of several windows' answer: export them again, alone."""
    record.state, record.updated_at = "ambiguous", now
    record.last_error = f"could be the file of windows {list(candidates)}"
    for window in (w for w in windows if w.id in candidates):
        window.serial = True
        if window.state in IN_FLIGHT:
            set_state(window, "planned", now, reason="an empty file could be its; exporting it alone")


def _judge(
    session: Session, run: ExportRun, window: ExportWindow, record: ExportFile, options: RunOptions,
    now: datetime,
) -> Outcome:
    """Match the file to its window and settle the window: verified, split, or unexportable."""
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
        set_state(window, "verified", now, reason=None)
        run.density = smoothed(run.density, span, record.rows or 0, options.plan())
    elif outcome is Outcome.SPLIT:
        set_state(window, "split", now, reason=f"{record.rows} rows: at the cap, may be truncated; split")
        for part in parts:
            session.add(new_window(run.id, part, now, parent_id=window.id))
    else:
        set_state(
            window,
            "unexportable",
            now,
            reason=f"{record.rows} rows in the smallest window the endpoint takes; not exported in full",
        )
    run.updated_at = now
    return outcome
