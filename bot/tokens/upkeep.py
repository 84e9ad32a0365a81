"""Proactive care of stored grants — Feishu users' and external providers' alike: refresh ahead
of expiry, alert before a refresh token runs out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from bot import alerts
from bot.models import utcnow
from bot.services import Services
from bot.tokens.store import TokenError, TokenStore

log = logging.getLogger(__name__)


def _grants(services: Services) -> Iterator[tuple[Any, Callable[[], TokenStore]]]:
    """Every stored grant, with (a way to) the store that refreshes it."""
    users = services.user_tokens
    for grant in users.grants():
        yield grant, lambda: users
    providers = services.provider_tokens
    for grant in providers.grants():
        yield grant, lambda name=grant.provider: providers.store(name)


def refresh_due(services: Services) -> dict[str, int]:
    """Refresh every active grant whose access token expires within the proactive margin (through
    the same locked path as any caller) and raise the "refresh token ends soon" alert once per
    grant and end time."""
    settings = services.settings
    counts = {"checked": 0, "refreshed_or_fresh": 0, "failed": 0}
    now = utcnow()
    for grant, store_of in _grants(services):
        if grant.status != "active":
            continue
        counts["checked"] += 1
        try:
            store = store_of()
            store.get_valid(grant.subject, cause="proactive",
                            margin_seconds=settings.token_proactive_margin_seconds)
            counts["refreshed_or_fresh"] += 1
        except TokenError as exc:
            counts["failed"] += 1
            log.warning("proactive refresh failed",
                        extra={"provider": grant.provider, "subject": grant.subject, "error": str(exc)})
            continue
        current = store.grant(grant.subject) or grant  # a refresh may have moved the end
        ends = current.refresh_expires_at
        if ends is not None and ends - now < timedelta(days=settings.token_alert_days):
            days = max(0.0, (ends - now).total_seconds() / 86400)
            key, message = store.kind.expiring_alert(current, ends, days)
            alerts.raise_alert(services.engine, key=key, kind="token_refresh_expiring", message=message)
    return counts
