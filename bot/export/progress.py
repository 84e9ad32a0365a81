"""Where an export run stands — for `export status`, the progress bar, chat cards, the dashboard.

`Progress` is a typed snapshot; `as_json()` is the document `export status --json` prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.models import ExportFile, ExportRun, ExportWindow, utcnow

COVERED = ("verified", "unexportable")  # windows whose span counts as done for the fraction
SETTLED = ("verified", "unexportable", "failed")
PROBLEMS = ("failed", "unexportable")


@dataclass(frozen=True)
class Problem:
    """A window that did not export in full: failed, or over the cap in its smallest span."""

    window: int
    start: str
    end: str
    state: str
    reason: str | None


@dataclass(frozen=True)
class Progress:
    run: int
    status: str  # running, paused, done, cancelled
    pause_reason: str | None
    range: tuple[str, str]  # ISO datetimes, end exclusive
    cursor: str
    calls: int
    count_calls: int
    records: int
    windows: Mapping[str, int]  # windows by state
    windows_done: int
    fraction: float  # share of the range covered, 0..1
    eta_seconds: int | None
    elapsed_seconds: int
    problems: tuple[Problem, ...]

    @property
    def finished(self) -> bool:
        return self.status in ("done", "cancelled")

    @property
    def total_windows(self) -> int:
        return sum(self.windows.values())

    @property
    def failed_windows(self) -> list[int]:
        return [p.window for p in self.problems if p.state == "failed"]

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(range=list(self.range), windows=dict(self.windows), problems=list(doc["problems"]))
        return doc


def progress(engine: Engine, run_id: int) -> Progress:
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
    covered = sum((w.end_at - w.start_at).total_seconds() for w in windows if w.state in COVERED)
    fraction = min(1.0, covered / total_span) if total_span else 1.0
    elapsed = ((run.finished_at or utcnow()) - run.created_at).total_seconds()
    eta = None if fraction <= 0 or run.status != "running" else elapsed * (1 - fraction) / fraction
    return Progress(
        run=run.id,
        status=run.status,
        pause_reason=run.pause_reason,
        range=(_iso(run.range_start), _iso(run.range_end)),
        cursor=_iso(run.cursor_at),
        calls=run.calls,
        count_calls=run.count_calls,
        records=sum(w.rows or 0 for w in windows if w.state == "verified"),
        windows=by_state,
        windows_done=sum(by_state.get(s, 0) for s in SETTLED),
        fraction=round(fraction, 4),
        eta_seconds=None if eta is None else round(eta),
        elapsed_seconds=round(elapsed),
        problems=tuple(
            Problem(w.id, _iso(w.start_at), _iso(w.end_at), w.state, w.reason)
            for w in windows
            if w.state in PROBLEMS
        ),
    )


def _iso(at: datetime) -> str:
    return at.isoformat(sep=" ")


def window_list(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    """Every window of the run with its file (`export status --windows`, the dashboard's grid)."""
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
            "start": _iso(w.start_at),
            "end": _iso(w.end_at),
            "state": w.state,
            "attempts": w.attempts,
            "rows": w.rows,
            "file": path,
            "reason": w.reason,
        }
        for w, path in rows
    ]


def waiting_since(engine: Engine, run_id: int) -> datetime | None:
    """When the run began waiting for the files still due (None: no window waits for one) — the
    polling path lists the export chat from then on."""
    with Session(engine) as session:
        run = session.get_one(ExportRun, run_id)
        oldest = session.scalar(
            select(func.min(ExportWindow.submitted_at)).where(
                ExportWindow.run_id == run_id,
                ExportWindow.state.in_(("awaiting_file", "planned", "submitted")),
            )
        )
    return None if oldest is None else min(oldest, run.created_at)
