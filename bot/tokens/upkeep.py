"""Proactive care of user tokens: refresh ahead of expiry, alert before the grant runs out."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot import alerts
from bot.models import utcnow
from bot.services import Services
from bot.tokens.user_tokens import TokenError

log = logging.getLogger(__name__)


def refresh_due(services: Services) -> dict[str, int]:
    """Refresh every active grant whose access token expires within the proactive margin (through
    the same locked path as any caller) and raise the "refresh token ends soon" alert once per
    grant."""
    settings = services.settings
    tokens = services.user_tokens
    counts = {"checked": 0, "refreshed_or_fresh": 0, "failed": 0}
    now = utcnow()
    for grant in tokens.grants():
        if grant.status != "active":
            continue
        counts["checked"] += 1
        try:
            tokens.get_valid_user_token(grant.subject, cause="proactive",
                                        margin_seconds=settings.token_proactive_margin_seconds)
            counts["refreshed_or_fresh"] += 1
        except TokenError as exc:
            counts["failed"] += 1
            log.warning("proactive refresh failed", extra={"subject": grant.subject, "error": str(exc)})
            continue
        ends = grant.refresh_expires_at
        if ends is not None and ends - now < timedelta(days=settings.token_alert_days):
            days = max(0.0, (ends - now).total_seconds() / 86400)
            alerts.raise_alert(
                services.engine,
                key=f"token:{grant.subject}:refresh_expiring:{ends:%Y%m%d%H%M}",
                kind="token_refresh_expiring",
                message=(f"⏰ 飞书用户 {grant.display_name or grant.subject} 的刷新令牌将在 "
                         f"{days:.1f} 天后过期，到期后自动同步会停止。"
                         f"请运行 `feishu-bridge auth login` 重新授权。"),
            )
    return counts
