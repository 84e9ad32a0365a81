"""Operator alerts: raised once per condition, delivered to the admin chat until Feishu took them.

A condition is named by its key (e.g. `token:ou_x:reauth_required:<login time>`): raising an
alert whose key exists does nothing, so a periodic check can raise on every tick and the
admin still gets one message. bot/chat/alerts.py delivers them.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.models import Alert, utcnow

log = logging.getLogger(__name__)


def raise_alert(engine: Engine, *, key: str, kind: str, message: str) -> bool:
    """Record the alert unless its condition was already raised. True when it is new."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(Alert)
        .values(key=key[:256], kind=kind, message=message, raised_at=utcnow(), attempts=0)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    with engine.begin() as conn:
        created = conn.execute(stmt).rowcount == 1
    if created:
        log.warning("alert raised", extra={"kind": kind, "key": key})
    return created


def pending(engine: Engine, limit: int = 50) -> list[Alert]:
    with Session(engine) as session:
        return list(session.scalars(
            select(Alert).where(Alert.sent_at.is_(None)).order_by(Alert.id).limit(limit)
        ))


def mark_sent(engine: Engine, alert_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(Alert).where(Alert.id == alert_id)
                     .values(sent_at=utcnow(), attempts=Alert.attempts + 1, last_error=None))


def mark_failed(engine: Engine, alert_id: int, error: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(Alert).where(Alert.id == alert_id)
                     .values(attempts=Alert.attempts + 1, last_error=error[:2000]))

