"""Contract export jobs: plan a run, submit one window, download one file, poll the chat, tick.
Each is one call into bot/export/steps.py, which holds what the step does."""

from __future__ import annotations

from bot.export import steps
from bot.services import current
from jobs.timing import instrumented


@instrumented("plan_export")
def plan_export(run_id: int) -> list[int]:
    return steps.plan_run(current(), run_id)


@instrumented("submit_export_window")
def submit_export_window(window_id: int) -> str:
    return steps.submit_window(current(), window_id)


@instrumented("download_export_file")
def download_export_file(file_id: int) -> str:
    return steps.download_file(current(), file_id)


@instrumented("poll_export_messages")
def poll_export_messages() -> int:
    return steps.poll_messages(current())


@instrumented("tick_exports")
def tick_exports() -> int | None:
    return steps.tick(current())
