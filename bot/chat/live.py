"""Cards that follow their job: each tracked card (`chat_cards`) is rebuilt from its job's
current state and patched in place when it changed, until the work is over (then one final
patch with the result). The refresh job runs every CHAT_CARD_REFRESH_SECONDS."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

from bot.chat.cards import Card, coze_sync_card, export_card
from bot.coze import manual
from bot.export.progress import progress
from bot.im import patch_card
from bot.models import ChatCard
from bot.services import Services

EXPORT, COZE_SYNC = "export", "coze_sync"  # what a card follows: an export run, a Coze manual sync


def card_for(services: Services, kind: str, ref_id: int) -> Card:
    if kind == EXPORT:
        return export_card(progress(services.engine, ref_id))
    if kind == COZE_SYNC:
        state = manual.progress(services, ref_id)
        return coze_sync_card(ref_id, state, manual.progress_message(state))
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
    """A finished card whose work was restarted (a retry button) follows it again."""
    with services.engine.begin() as connection:
        connection.execute(
            update(ChatCard).where(ChatCard.message_id == card_message_id).values(state="live")
        )


def refresh_live_cards(services: Services) -> int:
    """Patch every live card whose content changed; returns how many were patched."""
    with services.sessions() as session:
        cards = list(session.scalars(select(ChatCard).where(ChatCard.state == "live")))
    patched = 0
    for row in cards:
        card = card_for(services, row.kind, row.ref_id)
        if card.digest != row.content_hash:
            patch_card(services.feishu, row.message_id, card.content)
            patched += 1
        with services.sessions() as session, session.begin():
            stored = session.get_one(ChatCard, row.id)
            stored.content_hash, stored.updated_at = card.digest, datetime.now(UTC)
            if card.final:
                stored.state = "final"
    return patched
