"""Chat commands run by the handler against the sandbox (no processes): /sync answers with a
card offering a forced sync, /cache answers inline or with an xlsx file, /coze list and
/auth status answer, unknown sources get usage help — and every command is audited."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from bot.caches import store
from bot.caches.sources import parse_source
from bot.caches.sync import sync_source
from bot.caches.visibility import parse_visibility
from bot.chat.buttons import on_click
from bot.models import ChatCommand
from handlers.messages import on_message_receive
from sandbox.seed import DEPARTMENTS, PEOPLE_COUNT, QUALITY_NODE
from sandbox.state import DEFAULT_USER_OPEN_ID
from tests.helpers import sender
from tests.oauth_helpers import authorize

CHAT = "oc_ops_chat"


@pytest.fixture
def bot(services, sandbox):
    """`quality` is read with the admin's user token and opened to the ops chat (a user-token
    source is otherwise readable only in private chat: tests/test_adversarial_visibility.py)."""
    services.settings.chat_admins = [DEFAULT_USER_OPEN_ID]
    authorize(services)
    store.add_source(
        services.engine,
        "quality",
        QUALITY_NODE,
        parse_source(QUALITY_NODE),
        3600,
        as_user=DEFAULT_USER_OPEN_ID,
        visibility=parse_visibility("chats", CHAT, DEFAULT_USER_OPEN_ID),
    )
    sync_source(services, "quality")
    return services, sandbox


def run(services, state, text: str, user: str = DEFAULT_USER_OPEN_ID) -> tuple[str, list]:
    message = state.add_user_message(CHAT, user, json.dumps({"text": text}, ensure_ascii=False))
    event = {
        "sender": {"sender_id": {"open_id": user}, "sender_type": "user"},
        "message": {
            "message_id": message.message_id,
            "chat_id": CHAT,
            "chat_type": "group",
            "message_type": "text",
            "content": message.content,
        },
    }
    outcome = on_message_receive(services, sender().envelope("im.message.receive_v1", event))
    return outcome, [m for m in state.bot_sent if m.parent_id == message.message_id]


def test_sync_and_cache_commands(bot):
    services, (base_url, state) = bot
    outcome, [card] = run(services, state, "/sync quality")
    assert outcome == "sync: ok" and card.msg_type == "interactive"
    content = json.loads(card.content)
    [button] = [a for e in content["elements"] if e["tag"] == "action" for a in e["actions"]]
    assert button["value"] == {"action": "force_sync", "sources": ["quality"]}
    assert services.queues["default"].count == 1

    # its button syncs in full, and the card is patched: the button is gone, the sync named
    click = sender().envelope("card.action.trigger", {
        "operator": {"open_id": DEFAULT_USER_OPEN_ID}, "action": {"value": button["value"]},
        "context": {"open_chat_id": CHAT, "open_message_id": card.message_id}})
    assert on_click(services, click) == "button force_sync: ok"
    patched = json.loads(state.messages[card.message_id].content)
    assert not [e for e in patched["elements"] if e["tag"] == "action"]
    assert "已开始强制全量同步：quality" in patched["elements"][0]["text"]["content"]

    _, [reply] = run(services, state, "/sync nowhere")
    assert "未知数据源 'nowhere'" in json.loads(reply.content)["text"]

    _, [file_reply] = run(services, state, "/cache quality 人力盘点")
    assert file_reply.msg_type == "file"
    file_key = json.loads(file_reply.content)["file_key"]
    book = load_workbook(io.BytesIO(httpx.get(f"{base_url}/sandbox/uploads/{file_key}").content))
    rows = list(book.active.iter_rows(values_only=True))
    assert rows[0][:3] == ("record_id", "姓名", "部门") and len(rows) - 1 == PEOPLE_COUNT

    department = DEPARTMENTS[0]
    _, [inline] = run(services, state, f"/cache quality 人力盘点 部门={department} 职级=3")
    text = json.loads(inline.content)["text"]
    assert text.startswith("quality/人力盘点：共 ") and department in text

    _, [coze] = run(services, state, "/coze list")
    assert "还没有 Coze 同步模板" in json.loads(coze.content)["text"]
    _, [auth] = run(services, state, "/auth status")
    assert "正常" in json.loads(auth.content)["text"]

    with services.sessions() as session:
        audit = [
            (r.command, r.outcome) for r in session.scalars(select(ChatCommand).order_by(ChatCommand.id))
        ]
    assert audit == [
        ("sync", "ok"),
        ("button force_sync", "ok"),
        ("sync", "usage"),
        ("cache", "ok"),
        ("cache", "ok"),
        ("coze list", "ok"),
        ("auth status", "ok"),
    ]


def test_a_redelivered_command_runs_once_and_strangers_are_refused(bot):
    services, (_, state) = bot
    message = state.add_user_message(CHAT, DEFAULT_USER_OPEN_ID, json.dumps({"text": "/status"}))
    event = {
        "sender": {"sender_id": {"open_id": DEFAULT_USER_OPEN_ID}, "sender_type": "user"},
        "message": {
            "message_id": message.message_id,
            "chat_id": CHAT,
            "chat_type": "p2p",
            "message_type": "text",
            "content": message.content,
        },
    }
    doc = sender().envelope("im.message.receive_v1", event)
    assert on_message_receive(services, doc) == "status: ok"
    assert on_message_receive(services, doc) == "ignored: command already handled"
    assert len([m for m in state.bot_sent if m.parent_id == message.message_id]) == 1
    outcome, [refusal] = run(services, state, "/export start 2022-01-01 2022-01-31", user="ou_stranger_0001")
    assert outcome == "refused" and "ou_stranger_0001" in json.loads(refusal.content)["text"]
    services.settings.chat_allowed_chats = [CHAT]  # anyone in an allowed chat may command
    outcome, _ = run(services, state, "/help", user="ou_stranger_0001")
    assert outcome == "help: ok"


def test_coze_sync_command_answers_with_a_card_patched_to_the_result(bot):
    from rq import SimpleWorker

    from bot.coze import templates
    from jobs.chat import refresh_chat_cards
    from sandbox.demo_tables import create_demo_tables
    from tests.coze_helpers import customer_spec

    services, (base_url, state) = bot
    create_demo_tables(services.engine, rows=12)
    templates.create(services, customer_spec(base_url, config_title="客户数据同步"))
    outcome, [card] = run(services, state, "/coze sync 客户数据同步")
    assert outcome == "coze sync: ok" and card.msg_type == "interactive"
    assert json.loads(card.content)["header"]["template"] == "blue"
    SimpleWorker([services.queues["coze"]], connection=services.redis).work(burst=True)
    assert refresh_chat_cards() == 1
    final = json.loads(state.messages[card.message_id].content)
    assert final["header"]["template"] == "green"
    assert "同步完成，成功同步 12 条记录" in json.dumps(final, ensure_ascii=False)
    assert refresh_chat_cards() == 0  # final: no more patches
    _, [unknown] = run(services, state, "/coze sync 不存在的模板")
    assert "找不到唯一的 Coze 模板" in json.loads(unknown.content)["text"]
