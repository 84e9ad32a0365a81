"""What each export job does: plan a run, submit a window, download and place a file, poll the
export chat. Each step is idempotent and decides under the run's Redis lock (bot/export/runner.py
holds the decisions, this module the I/O around them), so concurrent and repeated jobs are safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from bot.export import alerts, catch, download, runner, schedule
from bot.export import auth as export_auth
from bot.export.contract import Answer, Reply, bounds
from bot.export.files import BadExportFile
from bot.export.placement import place_file
from bot.export.progress import waiting_since
from bot.export.sizing import size_by_counting
from bot.export.throttle import SUBMIT_KEY, take_slot
from bot.export.windows import Outcome
from bot.models import ExportFile
from bot.services import Services

log = logging.getLogger(__name__)

T = TypeVar("T")


def locked(services: Services, run_id: int | None, action: Callable[[], T]) -> T:
    """Run one decision about a run under its Redis lock (never two at once for one run)."""
    lock = services.redis.lock(f"fb:lock:export-run:{run_id}", timeout=120, blocking_timeout=60)
    if not lock.acquire():
        raise TimeoutError(f"export run {run_id} stayed locked")
    try:
        return action()
    finally:
        lock.release()


def plan_run(services: Services, run_id: int) -> list[int]:
    """Claim the windows to submit now and queue their submissions. Fresh ground is sized by
    counting outside the run's lock, by one job at a time (the sizing lock is short-lived, so a
    sizing job killed mid-way does not hold up planning for long)."""
    step = locked(services, run_id, lambda: runner.plan(services.engine, run_id))
    ids = list(step.ids)
    sizing = services.redis.lock(f"fb:lock:export-size:{run_id}", timeout=60, blocking=False)
    if step.fresh_wanted and sizing.acquire():  # else another job is sizing from the same cursor
        try:
            sized, counted = size_by_counting(services, step)
            again = locked(
                services, run_id, lambda: runner.plan(services.engine, run_id, sized=sized, counted=counted)
            )
            ids += again.ids
        finally:
            sizing.release()
    for window_id in ids:
        schedule.enqueue_submit(services, window_id)
    return ids


def submit_window(services: Services, window_id: int) -> str:
    """Send one claimed window to the export endpoint (within the shared rate) and record the
    answer; then plan again — when its file is due, when its back-off ends, and now."""
    claim = runner.claimed(services.engine, window_id)
    if claim is None:
        return "stale"
    wait = take_slot(services.redis, SUBMIT_KEY, services.settings.export_qps)
    if wait:
        runner.touch(services.engine, window_id)
        schedule.enqueue_submit(services, window_id, delay=wait)
        return "waiting for a rate slot"
    try:
        auth = export_auth.load(services.engine, services.secret_box)
    except export_auth.NoExportAuth as exc:
        reply = Reply(Answer.AUTH, None, str(exc))
    else:
        start, end = bounds(claim.start, claim.end, claim.options.finer_bounds)
        reply = services.contract.submit(auth, start, end, claim.options.filters())
    outcome = locked(
        services, claim.run_id, lambda: runner.record_submission(services.engine, window_id, reply)
    )
    log.info(
        "export window submitted", extra={"window": window_id, "outcome": outcome, "answer": reply.answer}
    )
    if outcome == "paused":
        alerts.paused(services.engine, claim.run_id, _auth_version(services))
        return outcome
    if outcome == "submitted":
        schedule.schedule_plan(services, claim.run_id, delay=claim.options.file_timeout_seconds + 1)
    elif outcome == "backoff":
        schedule.schedule_plan(services, claim.run_id, delay=runner.retry_delay(services.engine, window_id))
    schedule.schedule_plan(services, claim.run_id)
    return outcome


def _auth_version(services: Services) -> str:
    found = export_auth.status(services.engine, services.secret_box)
    return found.fingerprint if found else "none"


def download_file(services: Services, file_id: int) -> str:
    """Fetch a completion message's file (API, else the web messenger), then place it."""
    with services.sessions() as session:
        record = session.get_one(ExportFile, file_id)
    if record.state == "received":
        try:
            content, via = download.fetch_file(services, record)
        except download.DownloadFailed as exc:
            download.mark_failed(services.engine, file_id, str(exc), final=False)
            raise
        try:
            download.save_download(services.engine, services.settings, file_id, content, via)
        except BadExportFile as exc:
            download.mark_failed(services.engine, file_id, str(exc), final=True)
            alerts.bad_file(services.engine, file_id, record.message_id, exc)
            return "unreadable"
    run_id = runner.active_run_id(services.engine)
    placed = locked(services, run_id, lambda: place_file(services.engine, file_id))
    if placed.outcome is Outcome.ACCEPTED:
        download.file_away(services.engine, services.settings, file_id)
    if placed.outcome is Outcome.UNEXPORTABLE and placed.window:
        alerts.unexportable(services.engine, placed.window_id, *placed.window)
    if run_id is not None:
        schedule.schedule_plan(services, run_id)
    return placed.file_state


def on_completion_message(services: Services, found: catch.CompletionFile, via: str) -> bool:
    """Record a recognised completion message and queue its download (once per message)."""
    file_id = catch.record(services.engine, found, via)
    if file_id is None:
        return False
    schedule.enqueue_download(services, file_id)
    return True


def poll_messages(services: Services) -> int:
    """The polling path: list the export chat while a run waits for files; new ones are downloaded."""
    settings = services.settings
    run_id = runner.active_run_id(services.engine)
    if run_id is None or not settings.export_chat_id:
        return 0
    since = waiting_since(services.engine, run_id)
    if since is None:
        return 0
    found = 0
    for item in download.list_chat_messages(services.feishu, settings, int(since.timestamp()) - 60):
        completion = catch.from_listing(item, settings)
        if completion is not None and on_completion_message(services, completion, "poll"):
            found += 1
    return found


def tick(services: Services) -> int | None:
    """Plan the active run (timeouts, back-offs, freed claims) even when no job is due."""
    run_id = runner.active_run_id(services.engine)
    if run_id is not None:
        schedule.schedule_plan(services, run_id)
    return run_id
