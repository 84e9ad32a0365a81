"""Event jobs: process an intake batch (queued by the webhook), sweep up abandoned receipts (cron)."""

from __future__ import annotations

from bot.intake import processing, sweep
from bot.services import current
from jobs.timing import instrumented


@instrumented("process_events")
def process_events(receipt_ids: list[int]) -> str:
    return processing.process_batch(current(), receipt_ids)


@instrumented("sweep_receipts")
def sweep_receipts(grace_seconds: int = 30) -> int:
    return sweep.sweep_receipts(current(), grace_seconds)
