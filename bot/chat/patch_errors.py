"""What a refused card patch means for the card (pure).

Feishu refuses `PATCH /open-apis/im/v1/messages/:message_id` for good once a card was recalled
or deleted, is older than 14 days, or its chat was dissolved: patching it again can never work,
so the card stops following its job and keeps the reason. A rate limit (5 patches a second per
message) or a server failure passes: the card stays live and the next refresh round tries again.
Codes from the error table of Feishu's patch doc (im-v1/message-card/patch.md); see
docs/sandbox.md, "Card patches".
"""

from __future__ import annotations

from dataclasses import dataclass

# Refusals that hold for ever: the card is finished with this reason.
FINISHED: dict[int, str] = {
    230011: "recalled",  # The message is recalled.
    230031: "older than 14 days",  # Message can only be modified within 14 days after sending.
    230110: "deleted",  # Action unavailable as the message has been deleted.
    232009: "chat dissolved",  # the chat the card was sent to has been dissolved
    # Invalid request: an unknown message, or a card that is not shared (no update_multi). The same
    # card sent again is refused again, so retrying would only repeat the refusal every round.
    230001: "refused",
}
# Throttled: per message (230020, also per chat for sends), per service/chat (11232, 11233), per
# app (99991400) — the codes the gateway (bot/feishu.py) retries with backoff before giving up.
RATE_LIMITED = frozenset({230020, 11232, 11233, 99991400})
MAX_DETAIL = 200  # characters of Feishu's message kept in a reason


@dataclass(frozen=True)
class PatchVerdict:
    finished: bool  # Feishu will never accept a patch of this card again
    reason: str  # for the log and `chat_cards.finished_reason`


def classify_patch_error(code: int | None, msg: str | None = None) -> PatchVerdict:
    """A failed patch's code (and message) → finished with a reason, or try again next round.
    Anything not known to be final (5xx, timeouts, unknown codes) is retried: a card is never
    dropped on an error nobody has classified."""
    detail = f": {msg[:MAX_DETAIL]}" if msg else ""
    if code in FINISHED:
        return PatchVerdict(True, f"{FINISHED[code]} ({code}{detail})")
    if code in RATE_LIMITED:
        return PatchVerdict(False, f"rate limited ({code})")
    return PatchVerdict(False, f"error ({code}{detail})")
