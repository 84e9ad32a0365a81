"""Process one recorded Feishu event: the job the webhook enqueues for every new receipt."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot import receipts
from bot.services import current
from jobs.timing import instrumented

log = logging.getLogger(__name__)


@instrumented("process_event")
def process_event(receipt_id: int) -> str:
    """Claim the receipt (so a duplicate job is a no-op), run its handler, record the outcome.
    A raised exception marks the receipt failed and lets RQ's Retry schedule another go."""
    from handlers import REGISTRY

    services = current()
    lease = timedelta(seconds=services.settings.event_lease_seconds)
    claimed = receipts.claim(services.engine, receipt_id, lease)
    if claimed is None:
        return "skipped: already processed or being processed"
    handler = REGISTRY.get(claimed.event_type)
    if handler is None:
        receipts.finish(services.engine, receipt_id)
        return f"no handler for {claimed.event_type}"
    try:
        outcome = handler(services, claimed.payload)
    except Exception as exc:
        receipts.fail(services.engine, receipt_id, f"{type(exc).__name__}: {exc}")
        log.warning(
            "event handler failed",
            extra={"receipt_id": receipt_id, "event_type": claimed.event_type,
                   "attempt": claimed.attempts, "error": str(exc)},
        )
        raise
    receipts.finish(services.engine, receipt_id)
    log.info("event processed", extra={"receipt_id": receipt_id, "outcome": outcome})
    return outcome
