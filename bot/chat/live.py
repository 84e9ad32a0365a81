"""Cards that follow their job: each tracked card (`chat_cards`) is rebuilt from its job's
current state and patched in place when it changed, until the work is over (then one final
patch with the result). The refresh job runs every CHAT_CARD_REFRESH_SECONDS.

Feishu refuses some patches for good (a recalled card, one older than 14 days): such a card is
finished with the reason in `finished_reason` and never tried again. Anything else that fails
(rate limit, server error) leaves the card live for the next round. Each card is refreshed on
its own, so one failure never holds the others back.

Pacing: Feishu allows 5 patches a second per message. A round patches each card at most once,
and only when its content changed; rounds are CHAT_CARD_REFRESH_SECONDS (≥ 1) apart, plus the
occasional round a command asks for, so a card sees far fewer than 5 patches a second and the
refresh needs no pacing of its own. A 230020 that gets through the gateway's retries is logged
and the card tries again next round.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select, update

from bot.chat.cards import Card, coze_sync_card, export_card, pipeline_card
from bot.chat.patch_errors import classify_patch_error
from bot.coze import manual
from bot.export.progress import progress
from bot.feishu import FeishuAPIError
from bot.im import patch_card
from bot.models import ChatCard
from bot.pipelines import runs
from bot.services import Services

log = logging.getLogger(__name__)

# what a card follows: an export run, a Coze manual sync, a pipeline run
EXPORT, COZE_SYNC, PIPELINE = "export", "coze_sync", "pipeline"


def card_for(services: Services, kind: str, ref_id: int) -> Card:
    if kind == EXPORT:
        return export_card(progress(services.engine, ref_id))
    if kind == COZE_SYNC:
        state = manual.progress(services, ref_id)
        return coze_sync_card(ref_id, state, manual.progress_message(state))
    if kind == PIPELINE:
        return pipeline_card(runs.status(services.engine, ref_id))
    raise ValueError(f"unknown card kind {kind!r}")


def track(services: Services, card_message_id: str, chat_id: str, kind: str, ref_id: int, card: Card) -> None:
    """Remember a card just sent, so the refresh job keeps it up to date."""
    with services.sessions() as session, session.begin():
        session.add(
            ChatCard(
                message_id=card_message_id,
                chat_id=chat_id,
                kind=kind,
                ref_id=ref_id,
                state="final" if card.final else "live",
                content_hash=card.digest,
                updated_at=datetime.now(UTC),
            )
        )


def follow_again(services: Services, card_message_id: str) -> None:
    """A finished card whose work was restarted (a retry button) follows it again — unless
    Feishu refused it for good (`finished_reason`): patching it would only be refused again."""
    with services.engine.begin() as connection:
        connection.execute(
            update(ChatCard)
            .where(ChatCard.message_id == card_message_id, ChatCard.finished_reason.is_(None))
            .values(state="live")
        )


def refresh_live_cards(services: Services) -> int:
    """Patch every live card whose content changed, each on its own; returns how many were
    patched."""
    with services.sessions() as session:
        cards = list(session.scalars(select(ChatCard).where(ChatCard.state == "live")))
    return sum(_refresh(services, row) for row in cards)


def _refresh(services: Services, row: ChatCard) -> bool:
    """One card's round: rebuild it, patch it if it changed, remember what it shows. True when
    it was patched. Never raises: a failure is this card's alone."""
    extra = {"message_id": row.message_id, "kind": row.kind, "ref_id": row.ref_id}
    try:
        card = card_for(services, row.kind, row.ref_id)
        changed = card.digest != row.content_hash
        if changed:
            patch_card(services.feishu, row.message_id, card.content)
    except FeishuAPIError as exc:
        _refused(services, row, exc)
        return False
    except Exception:  # its job's state could not be read, the network failed, …: next round
        log.exception("card refresh failed; trying again next round", extra=extra)
        return False
    _store(services, row.id, card)
    return changed


def _refused(services: Services, row: ChatCard, exc: FeishuAPIError) -> None:
    """Feishu refused the patch: finish the card if that is for good, else leave it live."""
    verdict = classify_patch_error(exc.code, exc.msg)
    extra = {"message_id": row.message_id, "kind": row.kind, "ref_id": row.ref_id, "code": exc.code,
             "reason": verdict.reason}
    if verdict.finished:
        log.warning("card %s can no longer be patched (%s); it stops following its job",
                    row.message_id, verdict.reason, extra=extra)
        finish(services, row.id, verdict.reason)
    else:
        log.warning("card %s was not patched (%s); trying again next round",
                    row.message_id, verdict.reason, extra=extra)


def _store(services: Services, row_id: int, card: Card) -> None:
    """The card now shows `card`; once its work is over it is final."""
    with services.sessions() as session, session.begin():
        stored = session.get_one(ChatCard, row_id)
        stored.content_hash, stored.updated_at = card.digest, datetime.now(UTC)
        if card.final:
            stored.state = "final"


def finish(services: Services, row_id: int, reason: str) -> None:
    """Stop following a card Feishu will not patch again, keeping why."""
    with services.sessions() as session, session.begin():
        stored = session.get_one(ChatCard, row_id)
        stored.state, stored.finished_reason, stored.updated_at = "final", reason, datetime.now(UTC)
