"""The retention job (cron): trim receipts, delivered outbox rows, audit trails and old export
archives, in bounded batches (bot/retention.py)."""

from __future__ import annotations

from bot import retention
from bot.services import current
from jobs.timing import instrumented


@instrumented("apply_retention")
def apply_retention() -> dict[str, int]:
    return retention.run(current())
