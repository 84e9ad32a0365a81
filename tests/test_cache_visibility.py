"""Per-source visibility in chat (bot/caches/visibility.py), pure: every kind × private/group
chat × admin/owner/anyone else, the defaults, what an operator may set, and a stored value that
cannot be read failing closed."""

from __future__ import annotations

import pytest

from bot.caches.visibility import (
    Visibility,
    VisibilityError,
    describe,
    may_read,
    parse_visibility,
    stored,
)
from bot.chat.texts import not_visible_text

ADMIN, OWNER, OTHER = "ou_admin", "ou_owner", "ou_other"
ALLOWED_GROUP, LISTED_GROUP, OTHER_GROUP = "oc_allowed_group", "oc_listed_group", "oc_other_group"
ALLOWED_DM, LISTED_DM, OTHER_DM = "oc_allowed_dm", "oc_listed_dm", "oc_other_dm"
KINDS = {
    "allowed": Visibility("allowed"),
    "owner": Visibility("owner"),
    "chats": Visibility("chats", (LISTED_GROUP, LISTED_DM)),
}
# (kind, chat) → who may read it there; every other (kind, chat, person) is refused.
READERS = {
    ("allowed", ALLOWED_GROUP): {ADMIN, OWNER, OTHER},
    ("allowed", LISTED_GROUP): set(),
    ("allowed", OTHER_GROUP): set(),  # an admin in a group with outsiders, too
    ("allowed", ALLOWED_DM): {ADMIN, OWNER, OTHER},
    ("allowed", LISTED_DM): {ADMIN},
    ("allowed", OTHER_DM): {ADMIN},
    ("owner", ALLOWED_GROUP): set(),  # a user's token never reads for a group
    ("owner", LISTED_GROUP): set(),
    ("owner", OTHER_GROUP): set(),
    ("owner", ALLOWED_DM): {ADMIN, OWNER},  # an allowed private chat is still not the owner's
    ("owner", LISTED_DM): {ADMIN, OWNER},
    ("owner", OTHER_DM): {ADMIN, OWNER},
    ("chats", ALLOWED_GROUP): set(),  # `chats` is the list, not the allowed chats as well
    ("chats", LISTED_GROUP): {ADMIN, OWNER, OTHER},
    ("chats", OTHER_GROUP): set(),
    ("chats", ALLOWED_DM): {ADMIN},
    ("chats", LISTED_DM): {ADMIN, OWNER, OTHER},
    ("chats", OTHER_DM): {ADMIN},
}


@pytest.mark.parametrize(("kind", "chat"), sorted(READERS))
@pytest.mark.parametrize("person", [ADMIN, OWNER, OTHER])
def test_who_may_read_where(kind, chat, person):
    chat_type = "p2p" if chat.endswith("_dm") else "group"
    reason = may_read(KINDS[kind], OWNER, chat_id=chat, chat_type=chat_type, open_id=person,
                      admins=[ADMIN], allowed_chats=[ALLOWED_GROUP, ALLOWED_DM])
    if person in READERS[(kind, chat)]:
        assert reason is None
    else:
        assert reason and reason.startswith(f"visibility {kind}:")


@pytest.mark.parametrize("chat_type", ["", None, "topic_group", "P2P"])
def test_a_chat_not_known_to_be_private_counts_as_a_group(chat_type):
    for kind in ("allowed", "owner", "chats"):
        assert may_read(KINDS[kind], OWNER, chat_id=OTHER_DM, chat_type=chat_type, open_id=ADMIN,
                        admins=[ADMIN], allowed_chats=[]) is not None


def test_an_owner_source_without_an_owner_is_for_admins_only():
    for person in (ADMIN, OTHER):
        reason = may_read(Visibility("owner"), None, chat_id=OTHER_DM, chat_type="p2p", open_id=person,
                          admins=[ADMIN], allowed_chats=[OTHER_DM])
        assert (reason is None) == (person == ADMIN)
    assert may_read(Visibility("owner"), None, chat_id=OTHER_DM, chat_type="p2p", open_id="",
                    admins=[ADMIN], allowed_chats=[]) is not None


def test_defaults_follow_the_reader():
    assert parse_visibility(None, None, None) == Visibility("allowed")
    assert parse_visibility(None, None, OWNER) == Visibility("owner")
    assert parse_visibility(None, "oc_a, oc_b,,oc_a", OWNER) == Visibility("chats", ("oc_a", "oc_b"))
    assert parse_visibility("chats", ["oc_a"], None).stored_chats == '["oc_a"]'
    assert parse_visibility("allowed", None, OWNER).stored_chats is None  # an operator may widen it


@pytest.mark.parametrize(("kind", "chats", "as_user", "message"), [
    ("owner", None, None, "needs a source read with --as-user"),
    ("chats", None, OWNER, "needs --chats"),
    ("chats", " , ", OWNER, "needs --chats"),
    ("allowed", "oc_a", None, "--chats goes with visibility 'chats'"),
    ("chats", "oc_a,ou_someone", None, "'ou_someone' is not a chat id"),
    ("chats", "oc_a;DROP TABLE", None, "is not a chat id"),
    ("everyone", None, None, "unknown visibility 'everyone'"),
])
def test_what_cannot_be_set_says_why(kind, chats, as_user, message):
    with pytest.raises(VisibilityError, match=message.replace("(", r"\(")):
        parse_visibility(kind, chats, as_user)


@pytest.mark.parametrize(("kind", "chats"), [
    ("chats", "not json"), ("chats", '{"oc_a": 1}'), ("chats", None), ("public", None), (None, None),
])
def test_a_stored_value_that_cannot_be_read_fails_closed(kind, chats):
    shown = stored(kind, chats)
    assert shown.kind == "chats" and shown.chats == ()
    assert may_read(shown, OWNER, chat_id=ALLOWED_GROUP, chat_type="group", open_id=OWNER,
                    admins=[ADMIN], allowed_chats=[ALLOWED_GROUP]) is not None


def test_stored_round_trips():
    for shown in KINDS.values():
        assert stored(shown.kind, shown.stored_chats) == shown


def test_descriptions_and_the_refusal_text():
    assert describe(Visibility("allowed"), None) == "allowed chats; admins in private chat"
    assert describe(Visibility("owner"), OWNER) == f"owner {OWNER} and admins, private chat only"
    assert describe(KINDS["chats"], None) == f"{LISTED_GROUP}, {LISTED_DM}; admins in private chat"
    text = not_visible_text("hr", KINDS["chats"], OTHER_GROUP)
    assert "数据源 hr 不能在此会话中查看" in text and LISTED_GROUP in text
    wanted = f"{LISTED_GROUP},{LISTED_DM},{OTHER_GROUP}"
    assert f"feishu-bridge sources visibility hr chats --chats {wanted}" in text
    assert "私聊" in not_visible_text("hr", Visibility("owner"), OTHER_GROUP)
