"""The contract export as RQ jobs: plan a run, submit one window, download one file, poll the chat.

Each job is small and idempotent; the decisions live in bot/export/runner.py, made under the
run's Redis lock so concurrent jobs never decide about one run at the same time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from bot.alerts import raise_alert
from bot.export import auth as export_auth
from bot.export import catch, download, runner
from bot.export.contract import Answer, Reply, bounds
from bot.export.files import BadExportFile
from bot.export.windows import Window, fit_window
from bot.queue import QueueName, enqueue_once, retry_policy
from bot.services import Services, current
from jobs.timing import instrumented

log = logging.getLogger(__name__)

T = TypeVar("T")
DOWNLOAD_RETRIES = [5, 30, 120, 600]
QPS_KEY = "fb:export:qps"
COUNT_QPS_KEY = "fb:export:count-qps"


@contextmanager
def run_lock(services: Services, run_id: int | None):
    lock = services.redis.lock(f"fb:lock:export-run:{run_id}", timeout=120, blocking_timeout=60)
    if not lock.acquire():
        raise TimeoutError(f"export run {run_id} stayed locked")
    try:
        yield
    finally:
        lock.release()


def locked(services: Services, run_id: int | None, action: Callable[[], T]) -> T:
    with run_lock(services, run_id):
        return action()


def schedule_plan(services: Services, run_id: int, delay: float | None = None) -> None:
    queue = services.queues[QueueName.EXPORTS]
    if delay:
        queue.enqueue_in(timedelta(seconds=delay), plan_export, run_id, job_timeout=300)
    else:
        enqueue_once(queue, f"export-plan-{run_id}", plan_export, run_id, timeout=300)


def enqueue_download(services: Services, file_id: int) -> None:
    services.queues[QueueName.DOWNLOADS].enqueue(
        download_export_file,
        file_id,
        job_id=f"export-download-{file_id}",
        job_timeout=600,
        retry=retry_policy(DOWNLOAD_RETRIES),
        description=f"export file {file_id}",
    )


@instrumented("plan_export")
def plan_export(run_id: int) -> list[int]:
    services = current()
    step = locked(services, run_id, lambda: runner.plan(services.engine, run_id))
    ids = list(step.ids)
    # short-lived: a sizing job killed mid-way must not hold up planning for long
    sizing = services.redis.lock(f"fb:lock:export-size:{run_id}", timeout=60, blocking=False)
    if step.fresh_wanted and sizing.acquire():  # else another job is sizing from the same cursor
        try:
            sized, counted = size_windows(services, step)
            again = locked(
                services, run_id, lambda: runner.plan(services.engine, run_id, sized=sized, counted=counted)
            )
            ids += again.ids
        finally:
            sizing.release()
    for window_id in ids:
        services.queues[QueueName.EXPORTS].enqueue(
            submit_export_window, window_id, job_timeout=120, description=f"export window {window_id}"
        )
    return ids


def size_windows(services: Services, step: runner.Step) -> tuple[list[Window], int]:
    """Fresh windows from the run's cursor, each as long as the list endpoint's counts allow.
    On any failure to count, an empty list: the planner falls back to density this time."""
    assert step.options is not None and step.cursor is not None and step.end is not None
    options, plan_options = step.options, step.options.plan()
    settings = services.settings
    calls = 0

    @retry(retry=retry_if_exception_type(CountRetryable), stop=stop_after_attempt(6),
           wait=wait_random_exponential(multiplier=0.2, max=5), reraise=True)
    def count(start, end) -> int:
        nonlocal calls
        _wait_for_slot(services, COUNT_QPS_KEY, settings.export_count_qps)
        low, high = bounds(start, end, options.finer_bounds)
        calls += 1
        reply = services.contract.count(auth, settings.export_count_path, low, high, options.filters())
        if reply.answer in (Answer.RATE, Answer.SERVER):
            raise CountRetryable(reply.detail)
        if reply.answer is not Answer.OK or reply.total is None:
            raise CountUnavailable(reply.detail)
        return reply.total

    sized: list[Window] = []
    try:
        auth = export_auth.load(services.engine, services.secret_box)
        cursor, density = step.cursor, step.density
        for _ in range(step.fresh_wanted):
            guess = (
                plan_options.initial
                if not density
                else timedelta(seconds=plan_options.fill * plan_options.cap / density)
            )
            window = fit_window(cursor, step.end, count, plan_options, guess)
            if window is None:
                break
            sized.append(window)
            cursor = window.end
    except (CountUnavailable, export_auth.NoExportAuth) as exc:
        log.warning("cannot count records; sizing by density", extra={"error": str(exc)})
    return sized, calls


class CountUnavailable(RuntimeError):
    """The list endpoint cannot be used to count (auth, unknown endpoint, no total)."""


class CountRetryable(CountUnavailable):
    """Throttled or a server error: worth a few quick retries."""


def _wait_for_slot(services: Services, key: str, qps: float) -> None:
    gap_ms = max(1, int(1000 / max(qps, 0.001)))
    while not services.redis.set(key, 1, nx=True, px=gap_ms):
        time.sleep(max(services.redis.pttl(key), 1) / 1000)


@instrumented("submit_export_window")
def submit_export_window(window_id: int) -> str:
    services = current()
    claim = runner.claimed(services.engine, window_id)
    if claim is None:
        return "stale"
    gap_ms = max(1, int(1000 / max(services.settings.export_qps, 0.001)))
    if not services.redis.set(QPS_KEY, window_id, nx=True, px=gap_ms):
        wait = max(services.redis.pttl(QPS_KEY), 1) / 1000
        runner.touch(services.engine, window_id)
        services.queues[QueueName.EXPORTS].enqueue_in(
            timedelta(seconds=wait), submit_export_window, window_id, job_timeout=120
        )
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
        raise_alert(
            services.engine,
            key=f"export-paused:{claim.run_id}:{_auth_version(services)}",
            kind="export_paused",
            message=f"合同协同导出已暂停（run {claim.run_id}）：导出接口拒绝了当前登录态。"
            "请重新复制 curl 并执行 "
            "`feishu-bridge export auth --from-curl FILE`，然后 `feishu-bridge export resume`。",
        )
        return outcome
    if outcome == "submitted":
        schedule_plan(services, claim.run_id, delay=claim.options.file_timeout_seconds + 1)
    elif outcome == "backoff":
        schedule_plan(services, claim.run_id, delay=_retry_delay(services, window_id))
    schedule_plan(services, claim.run_id)
    return outcome


def _auth_version(services: Services) -> str:
    found = export_auth.status(services.engine, services.secret_box)
    return found.fingerprint if found else "none"


def _retry_delay(services: Services, window_id: int) -> float:
    from bot.models import ExportWindow, utcnow

    with services.sessions() as session:
        window = session.get(ExportWindow, window_id)
        at = window.next_attempt_at if window else None
    return max(0.1, (at - utcnow()).total_seconds() + 0.05) if at else 1.0


@instrumented("download_export_file")
def download_export_file(file_id: int) -> str:
    """Fetch a completion message's file (API, else the web messenger), then place it."""
    from bot.export import messenger
    from bot.feishu import FeishuAPIError
    from bot.models import ExportFile

    services = current()
    settings = services.settings
    with services.sessions() as session:
        record = session.get_one(ExportFile, file_id)
    if record.state == "received":
        try:
            content, via = (
                download.fetch_via_api(services.feishu, settings, record.message_id, record.file_key),
                "api",
            )
        except FeishuAPIError as exc:
            log.warning(
                "API download refused; using the web messenger", extra={"file": file_id, "code": exc.code}
            )
            target = download.incoming_dir(settings) / f"{record.message_id}.browser"
            try:
                messenger.download(settings, record.message_id, record.file_name, target)
            except Exception as browser_exc:
                download.mark_failed(
                    services.engine, file_id, f"api: {exc}; browser: {browser_exc}", final=False
                )
                raise
            content, via = target.read_bytes(), "browser"
            target.unlink(missing_ok=True)
        try:
            download.save_download(services.engine, settings, file_id, content, via)
        except BadExportFile as exc:
            download.mark_failed(services.engine, file_id, str(exc), final=True)
            raise_alert(
                services.engine,
                key=f"export-bad-file:{file_id}",
                kind="export_bad_file",
                message=f"导出文件无法读取（message {record.message_id}）：{exc}",
            )
            return "unreadable"
    run_id = runner.active_run_id(services.engine)
    placed = locked(services, run_id, lambda: runner.place_file(services.engine, file_id))
    if placed.outcome is not None and placed.outcome.value == "accepted":
        download.file_away(services.engine, settings, file_id)
    if placed.outcome is not None and placed.outcome.value == "unexportable" and placed.window:
        start, end = placed.window
        raise_alert(
            services.engine,
            key=f"export-unexportable:{placed.window_id}",
            kind="export_unexportable",
            message=f"导出窗口 {start} ~ {end} 在最小粒度下仍达到 1000 条上限，无法完整导出；"
            "请配置更细的时间粒度（EXPORT_FINER_BOUNDS）或额外筛选条件。",
        )
    if run_id is not None:
        schedule_plan(services, run_id)
    return placed.file_state


def on_completion_message(services: Services, found: catch.CompletionFile, via: str) -> bool:
    """Record a recognised completion message and queue its download (once per message)."""
    file_id = catch.record(services.engine, found, via)
    if file_id is None:
        return False
    enqueue_download(services, file_id)
    return True


@instrumented("poll_export_messages")
def poll_export_messages() -> int:
    """The polling path: list the export chat while a run waits for files; new ones are downloaded."""
    from sqlalchemy import func, select

    from bot.models import ExportRun, ExportWindow

    services = current()
    settings = services.settings
    run_id = runner.active_run_id(services.engine)
    if run_id is None or not settings.export_chat_id:
        return 0
    with services.sessions() as session:
        run = session.get_one(ExportRun, run_id)
        oldest = session.scalar(
            select(func.min(ExportWindow.submitted_at)).where(
                ExportWindow.run_id == run_id,
                ExportWindow.state.in_(("awaiting_file", "planned", "submitted")),
            )
        )
    if oldest is None:
        return 0
    since = int(min(oldest, run.created_at).timestamp()) - 60
    found = 0
    for item in download.list_chat_messages(services.feishu, settings, since):
        completion = catch.from_listing(item, settings)
        if completion is not None and on_completion_message(services, completion, "poll"):
            found += 1
    return found


@instrumented("tick_exports")
def tick_exports() -> int | None:
    """Cron: plan the active run (timeouts, back-offs, freed claims) even when no job is due."""
    services = current()
    run_id = runner.active_run_id(services.engine)
    if run_id is not None:
        schedule_plan(services, run_id)
    return run_id
