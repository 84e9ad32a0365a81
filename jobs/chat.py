"""Chat jobs: keep progress cards up to date (cron, and soon after a command started one)."""

from __future__ import annotations

from bot.chat import live, schedule
from bot.services import current
from jobs.timing import instrumented


@instrumented("refresh_chat_cards")
def refresh_chat_cards() -> int:
    services = current()
    schedule.refresh_started(services)
    return live.refresh_live_cards(services)
