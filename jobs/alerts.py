"""Deliver pending operator alerts to the admin chat (cron)."""

from __future__ import annotations

from bot.chat.alerts import deliver_pending
from bot.services import current
from jobs.timing import instrumented


@instrumented("deliver_alerts")
def deliver_alerts() -> int:
    return deliver_pending(current())
