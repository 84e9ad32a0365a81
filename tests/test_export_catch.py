"""Completion messages reach the bridge only by polling (issue 14, item 7).

A bot receives messages only in its own chats; the user's chat with the contract bot is not one
of the app's, so Feishu — and the sandbox — push no event for it. The bridge lists that chat as
EXPORT_USER with the user's token."""

from __future__ import annotations

from datetime import datetime

import httpx
from sqlalchemy import select

from bot.export import runner, steps
from bot.export.contract import Answer, Reply
from bot.export.options import RunOptions
from bot.models import ExportFile
from sandbox.contract import CONTRACT_CHAT_ID
from sandbox.products.contract import complete_export
from sandbox.state import DEFAULT_USER_OPEN_ID
from tests.oauth_helpers import authorize


def _awaiting_window(services) -> None:
    """A run with one window submitted, so the poll has something to wait for."""
    run_id = runner.create_run(services.engine, datetime(2024, 6, 3), datetime(2024, 6, 5), RunOptions())
    [window_id] = runner.plan(services.engine, run_id, sized=[]).ids[:1]
    runner.record_submission(services.engine, window_id, Reply(Answer.OK, 200, "ok"))


def test_the_contract_bots_chat_pushes_no_event_and_polling_finds_the_file(services, sandbox):
    base_url, state = sandbox
    services.settings.export_chat_id = CONTRACT_CHAT_ID
    services.settings.export_user = DEFAULT_USER_OPEN_ID
    authorize(services)
    _awaiting_window(services)
    state.sender.config.webhook_url = f"{base_url}/nowhere"  # any push would be logged as an attempt
    try:
        complete_export(state, "exp-catch", "2024-06-03", "2024-06-04", "")
        assert state.sender.wait_idle(30)
        assert state.sender.attempts() == []  # Feishu sends the app nothing from that chat
        # the sandbox refuses to fake one: typing into that chat, or the old `events` knob
        typed = httpx.post(f"{base_url}/sandbox/chat", json={"text": "hi", "chat_id": CONTRACT_CHAT_ID})
        assert typed.status_code == 400 and "not in chat" in typed.json()["error"]
        knob = httpx.post(f"{base_url}/sandbox/contract/faults", json={"events": True})
        assert knob.status_code == 400 and "polls the chat as EXPORT_USER" in knob.json()["error"]
        assert state.sender.attempts() == []
    finally:
        state.sender.config.webhook_url = ""

    assert steps.poll_messages(services) == 1  # the listing, read with the user's token
    assert steps.poll_messages(services) == 0  # once per message
    with services.sessions() as session:
        [found] = session.scalars(select(ExportFile)).all()
    assert (found.seen_via, found.chat_id, found.state) == ("poll", CONTRACT_CHAT_ID, "received")
    assert found.file_name.startswith("协同操作记录导出_")
