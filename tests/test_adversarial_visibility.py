"""Who reads which cache in chat (issue 15, item 11): an admin's `/cache` in a group with
outsiders, and a member of an allowed chat reading a source cached with another person's
`--as-user` token, are refused — with a reply naming the source, the chats that may read it and
what an admin runs — and audited as refusals. Each test sends the message through the real
handler against the sandbox and asserts on what the chat was sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot.caches import store
from bot.caches.fetch import TableData
from bot.caches.sources import parse_source
from bot.models import ChatCommand
from sandbox.seed import QUALITY_NODE
from tests.helpers import sender

ADMIN = "ou_admin_0001"
OWNER = "ou_token_owner_0002"  # whose user token reads `private`
MEMBER = "ou_team_member_0003"  # anyone in the allowed team chat
TEAM = "oc_team_chat"  # in CHAT_ALLOWED_CHATS
OUTSIDERS = "oc_group_with_outsiders"  # not allowed: only admins may command here
ADMIN_DM, OWNER_DM, MEMBER_DM = "oc_dm_admin", "oc_dm_owner", "oc_dm_member"
TABLE = "名单"

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _source(services, name: str, as_user: str | None) -> None:
    source = store.add_source(services.engine, name, QUALITY_NODE, parse_source(QUALITY_NODE), 3600,
                              as_user=as_user)
    fields = [{"field_id": "fldName", "field_name": "姓名", "type": 1, "is_primary": True}]
    records = [{"record_id": f"rec{name}{n}", "fields": {"姓名": f"{name}-{n}"}} for n in range(3)]
    store.replace_bitable(services.engine, source.id, [TableData("tblList", TABLE, 1, fields, records)],
                          datetime.now(UTC))


@pytest.fixture
def chats(services, sandbox):
    """`shared` is read with the app's token, `private` with OWNER's user token."""
    services.settings.chat_admins = [ADMIN]
    services.settings.chat_allowed_chats = [TEAM, OWNER_DM, MEMBER_DM]
    _source(services, "shared", None)
    _source(services, "private", OWNER)
    return services, sandbox[1]


def say(services, state, text: str, *, user: str, chat: str, chat_type: str) -> tuple[str, str]:
    """The handler's outcome and the text of the bot's one reply."""
    message = state.add_user_message(chat, user, json.dumps({"text": text}, ensure_ascii=False))
    event = {"sender": {"sender_id": {"open_id": user}, "sender_type": "user"},
             "message": {"message_id": message.message_id, "chat_id": chat, "chat_type": chat_type,
                         "message_type": "text", "content": message.content}}
    from handlers.messages import on_message_receive

    outcome = on_message_receive(services, sender().envelope("im.message.receive_v1", event))
    [reply] = [m for m in state.bot_sent if m.parent_id == message.message_id]
    return outcome, json.loads(reply.content).get("text") or reply.content  # a card: its JSON


def _audit(services) -> list[tuple]:
    with services.sessions() as session:
        rows = session.scalars(select(ChatCommand).order_by(ChatCommand.id)).all()
    return [(r.chat_id, r.open_id, r.command, r.outcome, r.detail) for r in rows]


@SQLITE_ONLY
def test_an_admin_cannot_read_a_cache_in_a_group_with_outsiders(chats):
    services, state = chats
    outcome, text = say(services, state, f"/cache shared {TABLE}", user=ADMIN, chat=OUTSIDERS,
                        chat_type="group")
    assert outcome == "refused", text
    assert "shared-0" not in text
    assert "shared" in text and "CHAT_ALLOWED_CHATS" in text
    assert f"feishu-bridge sources visibility shared chats --chats {OUTSIDERS}" in text
    [(chat, who, command, result, detail)] = _audit(services)
    assert (chat, who, command, result) == (OUTSIDERS, ADMIN, "cache", "refused")
    assert "shared" in detail


@SQLITE_ONLY
def test_a_member_of_an_allowed_chat_cannot_read_another_persons_user_token_source(chats):
    services, state = chats
    outcome, text = say(services, state, f"/cache private {TABLE}", user=MEMBER, chat=TEAM,
                        chat_type="group")
    assert outcome == "refused", text
    assert "private-0" not in text and "私聊" in text
    # …nor in their own private chat with the bot, even one that is allowed
    outcome, text = say(services, state, f"/cache private {TABLE}", user=MEMBER, chat=MEMBER_DM,
                        chat_type="p2p")
    assert outcome == "refused" and "private-0" not in text
    # …and an admin does not open it to the group by asking there
    outcome, text = say(services, state, f"/cache private {TABLE}", user=ADMIN, chat=TEAM, chat_type="group")
    assert outcome == "refused" and "private-0" not in text
    assert [row[3] for row in _audit(services)] == ["refused"] * 3


@SQLITE_ONLY
def test_the_owner_and_the_admins_read_it_in_private_chat_only(chats):
    services, state = chats
    outcome, text = say(services, state, f"/cache private {TABLE}", user=OWNER, chat=OWNER_DM,
                        chat_type="p2p")
    assert outcome == "cache: ok" and "private-0" in text
    for source in ("private", "shared"):  # an admin's private chat needs no allowlist entry
        outcome, text = say(services, state, f"/cache {source} {TABLE}", user=ADMIN, chat=ADMIN_DM,
                            chat_type="p2p")
        assert outcome == "cache: ok" and f"{source}-0" in text
    outcome, text = say(services, state, f"/cache private {TABLE}", user=OWNER, chat=TEAM, chat_type="group")
    assert outcome == "refused" and "private-0" not in text  # not even its owner, in a group
    outcome, text = say(services, state, f"/cache shared {TABLE}", user=MEMBER, chat=TEAM, chat_type="group")
    assert outcome == "cache: ok" and "shared-0" in text  # the app's sources, as before
    # an event without a chat type is not taken for a private chat
    outcome, _ = say(services, state, f"/cache private {TABLE}", user=ADMIN, chat=ADMIN_DM, chat_type="")
    assert outcome == "refused"


def _cli(services, *argv: str):
    from click.testing import CliRunner

    from bot.cli.main import main as cli

    settings = services.settings
    env = {"DATABASE_URL": settings.effective_database_url, "REDIS_URL": settings.redis_url,
           "VAR_DIR": str(settings.var_dir)}
    return CliRunner().invoke(cli, list(argv), env=env)


@SQLITE_ONLY
def test_an_admin_opens_a_source_to_a_chat_and_closes_it_again(chats):
    services, state = chats
    _, refused = say(services, state, f"/cache private {TABLE}", user=MEMBER, chat=TEAM, chat_type="group")
    command = f"feishu-bridge sources visibility private chats --chats {TEAM}"
    assert command in refused  # what the refusal told the admin to run
    opened = _cli(services, *command.split()[1:])
    assert opened.exit_code == 0, opened.output
    assert opened.output.strip() == f"private in chat: {TEAM}; admins in private chat."

    outcome, text = say(services, state, f"/cache private {TABLE}", user=MEMBER, chat=TEAM, chat_type="group")
    assert outcome == "cache: ok" and "private-0" in text
    for user, chat, chat_type in ((MEMBER, MEMBER_DM, "p2p"), (ADMIN, OUTSIDERS, "group")):
        outcome, text = say(services, state, f"/cache private {TABLE}", user=user, chat=chat,
                            chat_type=chat_type)
        assert outcome == "refused" and "private-0" not in text
    assert f"--chats {TEAM},{OUTSIDERS}" in text  # opening it to one more chat keeps the first

    listed = json.loads(_cli(services, "sources", "list", "--json").output)["sources"]
    assert {s["name"]: (s["visibility"], s["visible_chats"]) for s in listed} == {
        "private": ("chats", [TEAM]), "shared": ("allowed", [])}

    closed = _cli(services, "sources", "visibility", "private", "owner")
    assert closed.exit_code == 0 and f"owner {OWNER} and admins, private chat only" in closed.output
    outcome, _ = say(services, state, f"/cache private {TABLE}", user=MEMBER, chat=TEAM, chat_type="group")
    assert outcome == "refused"


@SQLITE_ONLY
@pytest.mark.parametrize(("argv", "line"), [
    (["sources", "visibility", "shared", "owner"], "needs a source read with --as-user"),
    (["sources", "visibility", "private", "chats"], "needs --chats"),
    (["sources", "visibility", "private", "chats", "--chats", "oc_a,everyone"],
     "'everyone' is not a chat id"),
    (["sources", "visibility", "private", "allowed", "--chats", TEAM],
     "--chats goes with visibility 'chats'"),
    (["sources", "visibility", "nosuch", "allowed"], "no source named 'nosuch'"),
    (["sources", "visibility", "private", "public"], "'public' is not one of 'allowed', 'owner', 'chats'"),
    (["sources", "add", QUALITY_NODE, "--name", "mine", "--visibility", "owner"], "needs a source read with"),
    (["sources", "add", QUALITY_NODE, "--name", "mine", "--as-user", OWNER, "--chats", "nope"],
     "'nope' is not a chat id"),
])
def test_bad_visibility_input_is_one_clear_line_and_changes_nothing(chats, argv, line):
    services, _ = chats
    before = [(s.name, s.visibility, s.visible_chats) for s in store.list_sources(services.engine)]
    result = _cli(services, *argv)
    assert result.exit_code in (1, 2) and line in result.output, result.output
    assert "Traceback" not in result.output
    assert [(s.name, s.visibility, s.visible_chats) for s in store.list_sources(services.engine)] == before


@SQLITE_ONLY
def test_sources_added_by_the_cli_get_the_default_for_their_reader(chats):
    services, _ = chats
    for argv in (["--name", "app_read"], ["--name", "user_read", "--as-user", OWNER],
                 ["--name", "opened", "--as-user", OWNER, "--visibility", "chats", "--chats", TEAM]):
        added = _cli(services, "sources", "add", QUALITY_NODE, *argv)
        assert added.exit_code == 0, added.output
    shown = {s.name: (s.visibility, s.visible_chats) for s in store.list_sources(services.engine)}
    assert shown["app_read"] == ("allowed", None) and shown["user_read"] == ("owner", None)
    assert shown["opened"] == ("chats", json.dumps([TEAM]))


@SQLITE_ONLY
def test_listings_in_chat_show_only_what_that_chat_may_read(chats):
    services, state = chats
    outcome, text = say(services, state, "/status", user=MEMBER, chat=TEAM, chat_type="group")
    assert outcome == "status: ok" and "缓存：1 个数据源" in text and "private" not in text
    _, text = say(services, state, "/status", user=ADMIN, chat=ADMIN_DM, chat_type="p2p")
    assert "缓存：2 个数据源" in text and "private" in text

    outcome, card = say(services, state, "/sync", user=MEMBER, chat=TEAM, chat_type="group")
    assert outcome == "sync: ok" and "shared" in card and "private" not in card
    _, text = say(services, state, "/sync nowhere", user=MEMBER, chat=TEAM, chat_type="group")
    assert "可用的数据源：shared" in text and "private" not in text
    outcome, text = say(services, state, "/sync private", user=MEMBER, chat=TEAM, chat_type="group")
    assert outcome == "refused" and "数据源 private 不能在此会话中查看" in text
    outcome, text = say(services, state, "/sync", user=ADMIN, chat=OUTSIDERS, chat_type="group")
    assert outcome == "usage error replied" and "此会话中没有可查看的数据源" in text
    assert services.queues["default"].count == 1  # only the team chat's sync of `shared`
    audit = [(command, result) for _, _, command, result, _ in _audit(services)]
    assert audit == [("status", "ok"), ("status", "ok"), ("sync", "ok"), ("sync", "usage"),
                     ("sync", "refused"), ("sync", "usage")]


@SQLITE_ONLY
def test_operators_still_read_every_source_over_the_api(chats, client):
    services, _ = chats
    auth = {"Authorization": f"Bearer {services.settings.admin_token.get_secret_value()}"}
    summary = {s["source"]: s for s in client.get("/api/v1/cache", headers=auth).get_json()["sources"]}
    assert (summary["private"]["visibility"], summary["shared"]["visibility"]) == ("owner", "allowed")
    rows = client.get(f"/api/v1/cache/private/{TABLE}", headers=auth).get_json()
    assert rows["count"] == 3


@SQLITE_ONLY
def test_a_force_sync_button_syncs_only_what_the_clicking_chat_may_read(chats):
    """A /sync card forwarded into the team chat names `private` (OWNER's token): a member's
    click there force-syncs `shared` only. Before: both, `private` with its owner's token."""
    services, state = chats
    from bot.chat.buttons import on_click

    click = {"header": {"event_id": "click-forwarded"},
             "event": {"operator": {"open_id": MEMBER},
                       "action": {"value": {"action": "force_sync", "sources": ["shared", "private"]}},
                       "context": {"open_chat_id": TEAM, "open_message_id": "om_forwarded_card"}}}
    assert on_click(services, click) == "button force_sync: ok"
    [reply] = [m for m in state.bot_sent if m.chat_id == TEAM]
    assert json.loads(reply.content)["text"] == "已开始强制全量同步：shared"
