"""Delivering operator alerts (bot/alerts.py) to the admin chat, ADMIN_CHAT_ID."""

from __future__ import annotations

import logging

from bot import alerts
from bot.feishu import FeishuAPIError
from bot.im import send_text
from bot.services import Services

log = logging.getLogger(__name__)


def deliver_pending(services: Services) -> int:
    """Send every unsent alert to ADMIN_CHAT_ID; failures stay pending (with the error) for the
    next run. The message uuid is the alert's id, so a retry after a lost answer is not sent twice."""
    chat_id = services.settings.admin_chat_id
    waiting = alerts.pending(services.engine)
    if not waiting:
        return 0
    if not chat_id:
        log.warning("alerts pending but ADMIN_CHAT_ID is not set", extra={"count": len(waiting)})
        return 0
    sent = 0
    for alert in waiting:
        try:
            send_text(services.feishu, chat_id, alert.message, uuid=f"alert-{alert.id}")
        except (FeishuAPIError, OSError) as exc:
            alerts.mark_failed(services.engine, alert.id, str(exc))
            log.warning("alert not delivered", extra={"alert": alert.key, "error": str(exc)})
            continue
        alerts.mark_sent(services.engine, alert.id)
        sent += 1
    return sent
