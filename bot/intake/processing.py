"""Running recorded events in a worker: claim each receipt, run its handler, record the outcome."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from bot.intake import receipts
from bot.intake.routes import handler_for
from bot.logs import event_context
from bot.services import Services

log = logging.getLogger(__name__)


class EventsFailed(RuntimeError):
    """Some receipts of the batch failed; raised so RQ's Retry runs the batch again."""


def process_batch(services: Services, receipt_ids: list[int]) -> str:
    """Run each receipt's handler in turn. One failure does not hold back the others; the job
    then raises so RQ's Retry runs it again, and because every receipt is claimed atomically the
    retry (or any duplicate job) skips those already done and re-runs only the failed ones."""
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    for receipt_id in receipt_ids:
        try:
            outcomes[process_receipt(services, receipt_id)] += 1
        except Exception as exc:
            failures.append(f"receipt {receipt_id}: {type(exc).__name__}: {exc}")
    if failures:
        raise EventsFailed(f"{len(failures)} of {len(receipt_ids)} failed; " + "; ".join(failures))
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))


def process_receipt(services: Services, receipt_id: int) -> str:
    """Claim the receipt (so a duplicate job is a no-op), run its handler, record the outcome.
    A raised exception marks the receipt failed, with the error, and propagates."""
    lease = timedelta(seconds=services.settings.event_lease_seconds)
    claimed = receipts.claim(services.engine, receipt_id, lease)
    if claimed is None:
        return "skipped (already processed or being processed)"
    with event_context(claimed.event_id):  # every line logged from here on names the event
        return _run_handler(services, claimed)


def _run_handler(services: Services, claimed: receipts.Claimed) -> str:
    receipt_id = claimed.id
    handler = handler_for(claimed.event_type)
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
