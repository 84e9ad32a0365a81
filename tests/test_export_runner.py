"""The export runner's decisions against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from bot.export import runner
from bot.export.contract import Answer, Reply
from bot.export.options import RunOptions
from bot.export.placement import place_file
from bot.export.progress import progress
from bot.models import ExportFile, ExportWindow, utcnow

OK = Reply(Answer.OK, 200, "ok")
START = datetime(2024, 1, 1)


def _run(services, days: int = 28, **options) -> int:
    values = {"concurrency": 2, "file_timeout_seconds": 60.0, **options}
    return runner.create_run(
        services.engine, START, START + timedelta(days=days), RunOptions(**values)
    )


def _file(services, message_id: str, rows: int, first=None, last=None, at=None) -> int:
    with services.sessions() as session, session.begin():
        record = ExportFile(
            message_id=message_id,
            chat_id="oc",
            file_key=f"k-{message_id}",
            file_name="x.xlsx",
            message_at=at or utcnow(),
            seen_via="poll",
            state="downloaded",
            rows=rows,
            min_created=first,
            max_created=last,
            sha256=message_id,
            attempts=0,
            received_at=utcnow(),
            updated_at=utcnow(),
        )
        session.add(record)
        session.flush()
        return record.id


def _states(services, run_id: int) -> dict[int, str]:
    with services.sessions() as session:
        return dict(
            session.execute(
                select(ExportWindow.id, ExportWindow.state).where(ExportWindow.run_id == run_id)
            ).all()
        )


def test_an_empty_file_while_two_windows_wait_makes_them_go_one_at_a_time(services):
    run_id = _run(services)
    first, second = runner.plan(services.engine, run_id, sized=[]).ids
    for window_id in (first, second):
        assert runner.record_submission(services.engine, window_id, OK) == "submitted"
    placed = place_file(services.engine, _file(services, "m-empty", 0))
    assert placed.file_state == "ambiguous" and set(placed.candidates) == {first, second}
    assert _states(services, run_id) == {first: "planned", second: "planned"}
    # nothing is submitted while the earlier submissions could still be answered
    assert runner.plan(services.engine, run_id, sized=[]).ids == []
    later = utcnow() + timedelta(seconds=61)
    [alone] = runner.plan(services.engine, run_id, later, sized=[]).ids
    assert runner.record_submission(services.engine, alone, OK, later) == "submitted"
    assert runner.plan(services.engine, run_id, later, sized=[]).ids == []  # it goes alone
    placed = place_file(
        services.engine,
        _file(services, "m-empty-2", 0, at=later + timedelta(seconds=1)),
        later + timedelta(seconds=1),
    )
    assert placed.file_state == "matched" and placed.window_id == alone


def test_a_file_at_the_cap_splits_its_window_and_a_late_duplicate_is_stray(services):
    run_id = _run(services, days=10)
    [window_id, _] = runner.plan(services.engine, run_id, sized=[]).ids
    runner.record_submission(services.engine, window_id, OK)
    full = _file(services, "m-full", 1000, START, START + timedelta(days=3, hours=5))
    placed = place_file(services.engine, full)
    assert placed.outcome.value == "split"
    with services.sessions() as session:
        children = list(
            session.scalars(
                select(ExportWindow)
                .where(ExportWindow.parent_id == window_id)
                .order_by(ExportWindow.start_at)
            )
        )
    assert [(c.start_at, c.end_at) for c in children] == [
        (START, START + timedelta(days=3)),
        (START + timedelta(days=3), START + timedelta(days=7)),
    ]
    # the same export's file delivered twice: the copy matches nothing open any more
    again = place_file(
        services.engine, _file(services, "m-full-again", 1000, START, START + timedelta(days=3, hours=5))
    )
    assert again.file_state == "stray"


def test_answers_move_a_window_as_classified(services):
    run_id = _run(services, max_failures=2, backoff_seconds=1.0)
    first, second = runner.plan(services.engine, run_id, sized=[]).ids
    assert (
        runner.record_submission(services.engine, first, Reply(Answer.SERVER, 502, "bad gateway"))
        == "backoff"
    )
    assert (
        runner.record_submission(services.engine, second, Reply(Answer.BAD_REQUEST, 400, "bad")) == "failed"
    )
    assert _states(services, run_id)[first] == "planned"
    later = utcnow() + timedelta(seconds=5)
    assert first in runner.plan(services.engine, run_id, later, sized=[]).ids
    assert (
        runner.record_submission(services.engine, first, Reply(Answer.RATE, 429, "slow down"), later)
        == "failed"
    )
    third = runner.plan(services.engine, run_id, later, sized=[]).ids[0]
    assert (
        runner.record_submission(services.engine, third, Reply(Answer.AUTH, 401, "expired"), later)
        == "paused"
    )
    status = progress(services.engine, run_id)
    assert status.status == "paused" and {p.state for p in status.problems} == {"failed"}
    assert runner.plan(services.engine, run_id, later, sized=[]).ids == []  # paused: nothing moves


def test_a_claim_left_by_a_dead_worker_is_freed_after_the_lease(services):
    run_id = _run(services, submit_lease_seconds=30.0)
    claimed = runner.plan(services.engine, run_id, sized=[]).ids
    assert runner.plan(services.engine, run_id, sized=[]).ids == []
    again = runner.plan(services.engine, run_id, utcnow() + timedelta(seconds=31), sized=[]).ids
    assert sorted(again) == sorted(claimed)
