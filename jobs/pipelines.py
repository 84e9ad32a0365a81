"""Pipeline jobs: run (or resume) one run, and the cron's tick that starts due pipelines and
re-queues runs whose job was lost. Each is one call into bot/pipelines."""

from __future__ import annotations

from bot.pipelines import runner, runs
from bot.services import current
from jobs.timing import instrumented


@instrumented("run_pipeline")
def run_pipeline(run_id: int) -> str:
    return runner.run_pipeline(current(), run_id).state


@instrumented("run_due_pipelines")
def run_due_pipelines() -> dict[str, list[int]]:
    return runs.start_due(current())
