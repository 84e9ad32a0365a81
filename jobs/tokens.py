"""Proactive care of stored grants, Feishu users' and providers' (cron): refresh ahead of expiry, then
deliver pending alerts."""

from __future__ import annotations

from bot.chat.alerts import deliver_pending
from bot.services import current
from bot.tokens.upkeep import refresh_due
from jobs.timing import instrumented


@instrumented("refresh_due_tokens")
def refresh_due_tokens() -> dict[str, int]:
    services = current()
    counts = refresh_due(services)
    counts["alerts_sent"] = deliver_pending(services)
    return counts
