"""Card patches meet real Feishu's rules (issue 14, item 2): a card can be patched only within 14
days of sending, never once recalled, at most 5 times a second, and only when it is a shared card
(`config.update_multi: true`) before and after. The sandbox refuses as Feishu does; the bridge
patches each live card on its own, finishes (with the reason) a card Feishu will never accept a
patch for again, and leaves one that failed for a passing reason live for the next round."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import httpx
import pytest
from sqlalchemy import select

from bot.chat import live
from bot.export import runner
from bot.export.options import RunOptions
from bot.feishu import FeishuAPIError
from bot.im import patch_card, reply_card
from bot.models import ChatCard, utcnow
from sandbox.state import DEFAULT_USER_OPEN_ID, SANDBOX_APP_ID, SANDBOX_APP_SECRET
from tests.export_helpers import wait_for

CHAT = "oc_cards_chat"


def shared_card(text: str) -> dict:
    """A shared card (`update_multi`), as the bridge's cards are."""
    return {"config": {"update_multi": True},
            "elements": [{"tag": "div", "text": {"tag": "plain_text", "content": text}}]}


SHARED = shared_card("v1")


# -- the classification (pure) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "finished", "reason"),
    [
        (230011, True, "recalled"),
        (230031, True, "older than 14 days"),
        (230110, True, "deleted"),
        (232009, True, "chat dissolved"),
        (230001, True, "refused"),
        (230020, False, "rate limited"),
        (99991400, False, "rate limited"),
        (1500, False, "error"),
        (None, False, "error"),
    ],
)
def test_a_refused_patch_is_final_only_when_feishu_will_never_accept_one(code, finished, reason):
    from bot.chat.patch_errors import classify_patch_error

    verdict = classify_patch_error(code, "why")
    assert verdict.finished is finished and reason in verdict.reason
    assert str(code) in verdict.reason if code else True


# -- the sandbox holds Feishu's rules -----------------------------------------------------


def tenant_token(base_url: str) -> str:
    answer = httpx.post(f"{base_url}/open-apis/auth/v3/tenant_access_token/internal",
                        json={"app_id": SANDBOX_APP_ID, "app_secret": SANDBOX_APP_SECRET})
    return answer.json()["tenant_access_token"]


def raw_patch(base_url: str, token: str, message_id: str, card: dict) -> tuple[int, int]:
    """One PATCH with no client retries: (HTTP status, code)."""
    answer = httpx.patch(f"{base_url}/open-apis/im/v1/messages/{message_id}",
                         headers={"Authorization": f"Bearer {token}"},
                         json={"content": json.dumps(card)})
    return answer.status_code, answer.json()["code"]


def sent_card(state, card: dict = SHARED) -> str:
    message, _ = state.add_bot_message(chat_id=CHAT, msg_type="interactive", content=json.dumps(card),
                                       uuid=None)
    return message.message_id


def listed(base_url: str, token: str, message_id: str) -> dict:
    items = httpx.get(f"{base_url}/open-apis/im/v1/messages", headers={"Authorization": f"Bearer {token}"},
                      params={"container_id_type": "chat", "container_id": CHAT, "page_size": 50}).json()
    return next(m for m in items["data"]["items"] if m["message_id"] == message_id)


def test_sandbox_refuses_recalled_old_fast_and_unshared_patches(sandbox):
    base_url, state = sandbox
    token = tenant_token(base_url)

    recalled = sent_card(state)
    assert raw_patch(base_url, token, recalled, shared_card("v2")) == (200, 0)
    assert httpx.post(f"{base_url}/sandbox/messages/{recalled}/recall").json()["recalled"] is True
    assert raw_patch(base_url, token, recalled, shared_card("v3")) == (400, 230011)
    item = listed(base_url, token, recalled)
    assert item["deleted"] is True and item["body"]["content"] == "This message was recalled"
    assert item["updated"] is True  # it was patched once before the recall

    fresh, old = sent_card(state), sent_card(state)
    httpx.post(f"{base_url}/sandbox/messages/{fresh}/age", json={"days": 13}).raise_for_status()
    httpx.post(f"{base_url}/sandbox/messages/{old}/age", json={"days": 15}).raise_for_status()
    assert raw_patch(base_url, token, fresh, shared_card("v2")) == (200, 0)
    assert raw_patch(base_url, token, old, shared_card("v2")) == (400, 230031)
    assert listed(base_url, token, old)["deleted"] is False

    # the sixth patch within a second is refused; each call is quick, so retry until one is
    busy = sent_card(state)
    answers = []
    assert wait_for(lambda: answers.append(raw_patch(base_url, token, busy, shared_card(str(len(answers)))))
                    or answers[-1] == (400, 230020), 30, interval=0)
    assert answers.count((200, 0)) >= 5
    assert wait_for(lambda: raw_patch(base_url, token, busy, shared_card("later")) == (200, 0), 10)

    unshared = sent_card(state, {"elements": []})
    assert raw_patch(base_url, token, unshared, shared_card("v2")) == (400, 230001)
    shared = sent_card(state)
    assert raw_patch(base_url, token, shared, {"elements": []}) == (400, 230001)
    history = httpx.get(f"{base_url}/sandbox/messages/{shared}/history").json()
    assert history["updates"] == 0 and history["recalled"] is False


def test_recall_cards_knob_recalls_cards_the_app_sends(services, sandbox):
    base_url, state = sandbox
    httpx.post(f"{base_url}/sandbox/faults", json={"recall_cards": 1.0}).raise_for_status()
    parent = state.add_user_message(CHAT, DEFAULT_USER_OPEN_ID, json.dumps({"text": "/x"}))
    card_id = reply_card(services.feishu, parent.message_id, SHARED)  # the send itself succeeds
    with pytest.raises(FeishuAPIError) as refused:
        patch_card(services.feishu, card_id, shared_card("v2"))
    assert refused.value.code == 230011
    assert httpx.get(f"{base_url}/sandbox/messages/{card_id}/history").json()["recalled"] is True
    assert httpx.post(f"{base_url}/sandbox/faults", json={"recall_cards": 2}).status_code == 400


# -- the bridge: each card on its own ------------------------------------------------------


@pytest.fixture
def run_id(services) -> int:
    return runner.create_run(services.engine, datetime(2024, 6, 3), datetime(2024, 6, 5), RunOptions())


def follow(services, state, run_id: int, card: dict | None = None) -> str:
    """A card the bot sent for the run, tracked as live with a stale hash (so the next round
    patches it)."""
    parent = state.add_user_message(CHAT, DEFAULT_USER_OPEN_ID, json.dumps({"text": "/export status"}))
    content = card if card is not None else live.card_for(services, live.EXPORT, run_id).content
    card_id = reply_card(services.feishu, parent.message_id, content)
    with services.sessions() as session, session.begin():
        session.add(ChatCard(message_id=card_id, chat_id=CHAT, kind=live.EXPORT, ref_id=run_id, state="live",
                             content_hash="stale", updated_at=utcnow()))
    return card_id


def row(services, card_id: str) -> ChatCard:
    with services.sessions() as session:
        return session.scalars(select(ChatCard).where(ChatCard.message_id == card_id)).one()


def updates(base_url: str, card_id: str) -> int:
    return httpx.get(f"{base_url}/sandbox/messages/{card_id}/history").json()["updates"]


def test_a_recalled_card_is_finished_and_the_others_are_still_patched(services, sandbox, run_id, caplog):
    base_url, state = sandbox
    first, second, third = (follow(services, state, run_id) for _ in range(3))
    httpx.post(f"{base_url}/sandbox/messages/{first}/recall").raise_for_status()

    with caplog.at_level(logging.WARNING, logger="bot.chat.live"):
        assert live.refresh_live_cards(services) == 2
    assert (updates(base_url, first), updates(base_url, second), updates(base_url, third)) == (0, 1, 1)
    gone = row(services, first)
    assert gone.state == "final" and "recalled" in gone.finished_reason and "230011" in gone.finished_reason
    assert row(services, second).state == row(services, third).state == "live"
    assert row(services, second).finished_reason is None
    assert any(first in r.getMessage() or getattr(r, "message_id", None) == first for r in caplog.records)

    # never retried: the next rounds leave the finished card alone
    calls = len(state.api_calls)
    assert live.refresh_live_cards(services) == 0
    assert not [c for c in state.api_calls[calls:] if first in c["path"]]


def test_a_card_older_than_14_days_or_not_shared_is_finished_with_its_reason(services, sandbox, run_id):
    base_url, state = sandbox
    old = follow(services, state, run_id)
    unshared = follow(services, state, run_id, card={"elements": []})
    fine = follow(services, state, run_id)
    httpx.post(f"{base_url}/sandbox/messages/{old}/age", json={"days": 15}).raise_for_status()

    assert live.refresh_live_cards(services) == 1
    assert updates(base_url, fine) == 1
    too_old, not_shared = row(services, old), row(services, unshared)
    assert too_old.state == "final" and "14 days" in too_old.finished_reason
    assert not_shared.state == "final" and "update_multi" in not_shared.finished_reason


def test_rate_limited_and_failing_patches_leave_the_card_live_for_the_next_round(services, sandbox, run_id):
    base_url, state = sandbox
    services.settings.feishu_retries = 0  # what still surfaces after the gateway's retries
    busy = follow(services, state, run_id)
    content = live.card_for(services, live.EXPORT, run_id).content

    def saturated() -> bool:  # five patches within the last second: the next one is refused
        try:
            patch_card(services.feishu, busy, content)
        except FeishuAPIError as exc:
            return exc.code == 230020
        return False

    assert wait_for(saturated, 30, interval=0)
    before = updates(base_url, busy)
    assert live.refresh_live_cards(services) == 0
    assert row(services, busy).state == "live" and row(services, busy).content_hash == "stale"
    assert wait_for(lambda: live.refresh_live_cards(services) == 1, 30)
    assert updates(base_url, busy) == before + 1 and row(services, busy).content_hash != "stale"

    # a server failing (5xx) leaves it live too; once the server is back, the card catches up
    failing = follow(services, state, run_id)
    httpx.post(f"{base_url}/sandbox/faults", json={"server_error": 1.0}).raise_for_status()
    assert live.refresh_live_cards(services) == 0
    assert row(services, failing).state == "live" and updates(base_url, failing) == 0
    httpx.post(f"{base_url}/sandbox/faults", json={"server_error": 0.0}).raise_for_status()
    assert live.refresh_live_cards(services) == 1 and updates(base_url, failing) == 1


def test_a_card_whose_job_cannot_be_read_does_not_stop_the_others(services, sandbox, run_id):
    base_url, state = sandbox
    broken = follow(services, state, run_id)
    with services.sessions() as session, session.begin():
        session.scalars(select(ChatCard).where(ChatCard.message_id == broken)).one().ref_id = 999_999
    fine = follow(services, state, run_id)
    assert live.refresh_live_cards(services) == 1
    assert updates(base_url, fine) == 1 and row(services, broken).state == "live"
