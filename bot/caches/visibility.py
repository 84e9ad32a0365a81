"""Who may read a cached source in chat: each source's visibility, and the one rule that applies
it. Pure (no I/O); bot/chat/access.py applies it to every chat command that shows a source.

A source has one of three kinds (`cache_sources.visibility`, `visible_chats`):

* `allowed` — the default for sources read with the app's token: anyone in a chat listed in
  CHAT_ALLOWED_CHATS, and the admins (CHAT_ADMINS) in their private chat with the bot;
* `owner` — the default for `--as-user` sources: only in a private (p2p) chat, and only the user
  whose token reads it or an admin;
* `chats` — the chats listed (by chat id), and the admins in their private chat.

Being an admin opens every source in the admin's private chat, never in a group: a group may
hold people the data is not for. The operator surfaces (CLI, REST API, dashboard) read every
source; this is about chat.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.caches.sources import SourceError

KINDS = ("allowed", "owner", "chats")
PRIVATE = "p2p"  # `message.chat_type` of a one-to-one chat with the bot; anything else is a group
CHAT_ID_RE = re.compile(r"^oc_[A-Za-z0-9_-]{1,61}$")


class VisibilityError(SourceError):
    """A visibility that cannot be set; the message says why."""


@dataclass(frozen=True)
class Visibility:
    kind: str
    chats: tuple[str, ...] = ()  # only for `chats`

    @property
    def stored_chats(self) -> str | None:
        """`cache_sources.visible_chats`: a JSON list of chat ids, NULL unless `chats`."""
        return json.dumps(list(self.chats)) if self.kind == "chats" else None


def default_kind(as_user: str | None) -> str:
    return "owner" if as_user else "allowed"


def parse_visibility(kind: str | None, chats: str | Iterable[str] | None, as_user: str | None) -> Visibility:
    """What an operator asked for (`--visibility`, `--chats oc_a,oc_b`), checked against the
    source's reader: no kind means `chats` when chats are given, else the default for `as_user`."""
    if isinstance(chats, str):
        chats = chats.split(",")
    wanted = tuple(dict.fromkeys(c.strip() for c in chats or () if c.strip()))
    kind = kind or ("chats" if wanted else default_kind(as_user))
    if kind not in KINDS:
        raise VisibilityError(f"unknown visibility {kind!r}; expected one of {', '.join(KINDS)}")
    if kind != "chats":
        if wanted:
            raise VisibilityError(f"--chats goes with visibility 'chats', not {kind!r}")
        if kind == "owner" and not as_user:
            raise VisibilityError("visibility 'owner' needs a source read with --as-user; "
                                  "this one is read with the app's token (use 'allowed' or 'chats')")
        return Visibility(kind)
    if not wanted:
        raise VisibilityError("visibility 'chats' needs --chats oc_…,oc_… (the chat ids that may read it)")
    bad = [c for c in wanted if not CHAT_ID_RE.match(c)]
    if bad:
        raise VisibilityError(f"{bad[0]!r} is not a chat id (expected oc_ and letters, digits, _ or -)")
    return Visibility("chats", wanted)


def stored(kind: str | None, visible_chats: str | None) -> Visibility:
    """A source's visibility as its row holds it. Anything unreadable shows to nobody but the
    admins in private chat (fails closed)."""
    if kind not in KINDS:
        return Visibility("chats")
    if kind != "chats":
        return Visibility(kind)
    try:
        chats = json.loads(visible_chats or "[]")
    except ValueError:
        chats = []
    if not isinstance(chats, list):
        chats = []
    return Visibility("chats", tuple(c for c in chats if isinstance(c, str)))


def may_read(visibility: Visibility, as_user: str | None, *, chat_id: str, chat_type: str | None,
             open_id: str, admins: Iterable[str], allowed_chats: Iterable[str]) -> str | None:
    """None if `open_id`, writing in `chat_id`, may read the source here; else why not (for the
    audit). Whether this person may command the bot at all is checked before, separately."""
    private = chat_type == PRIVATE
    if private and open_id in set(admins):
        return None
    match visibility.kind:
        case "allowed":
            if chat_id in set(allowed_chats):
                return None
            return "visibility allowed: only chats in CHAT_ALLOWED_CHATS and admins' private chats"
        case "owner":
            if private and as_user and open_id == as_user:
                return None
            return "visibility owner: only its token's owner and admins, in private chat"
        case "chats":
            if chat_id in visibility.chats:
                return None
            return "visibility chats: only the chats listed and admins' private chats"
    return f"unknown visibility {visibility.kind!r}"  # pragma: no cover - stored() maps it to chats


def describe(visibility: Visibility, as_user: str | None) -> str:
    """One line for `sources list` and `sources visibility`."""
    match visibility.kind:
        case "allowed":
            return "allowed chats; admins in private chat"
        case "owner":
            return f"owner {as_user or '?'} and admins, private chat only"
    return f"{', '.join(visibility.chats) or 'no chat'}; admins in private chat"
