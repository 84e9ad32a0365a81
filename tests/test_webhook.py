"""POST /webhook/event through the app, with a real Redis and both databases."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from rq import Queue
from sqlalchemy import select

from bot.models import EventReceipt
from bot.queue import Jobs
from sandbox.state import SANDBOX_ENCRYPT_KEY, SANDBOX_VERIFICATION_TOKEN
from tests.helpers import challenge_body, sender, text_message_event


def _post(client, body: bytes, headers: dict | None = None):
    return client.post("/webhook/event", data=body, headers=headers or {},
                       content_type="application/json")


def _receipts(services) -> list[EventReceipt]:
    with services.sessions() as session:
        return list(session.scalars(select(EventReceipt).order_by(EventReceipt.id)))


def test_plain_challenge_is_answered(client):
    response = _post(client, challenge_body(challenge="abc"))
    assert response.status_code == 200
    assert response.get_json() == {"challenge": "abc"}


def test_encrypted_challenge_is_answered(client):
    response = _post(client, challenge_body(encrypt_key=SANDBOX_ENCRYPT_KEY, challenge="xyz"))
    assert response.status_code == 200
    assert response.get_json() == {"challenge": "xyz"}


def test_challenge_with_wrong_token_is_401(client, services):
    response = _post(client, challenge_body(token="wrong-token"))
    assert response.status_code == 401
    assert response.get_json()["reason"] == "bad_token"
    assert _receipts(services) == []


def test_event_is_recorded_and_enqueued_not_processed(client, services, redis_conn):
    s = sender()
    body, headers = s.wire(text_message_event(s, event_id="ev-abc"), encrypted=True)
    response = _post(client, body, headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    [receipt] = _receipts(services)
    assert (receipt.event_id, receipt.event_type, receipt.status, receipt.attempts) == (
        "ev-abc", "im.message.receive_v1", "received", 0)
    payload = json.loads(receipt.payload)
    assert payload["event"]["message"]["chat_id"] == "oc_test"
    assert SANDBOX_VERIFICATION_TOKEN not in receipt.payload
    queue = Queue("default", connection=redis_conn)
    [job] = queue.get_jobs()
    assert job.id == receipt.job_id
    assert job.func_name == Jobs.PROCESS_EVENTS and job.args == ([receipt.id],)
    assert job.retries_left == 2  # settings.event_retry_intervals in tests: [0, 0]


def test_duplicate_delivery_records_once(client, services, redis_conn):
    s = sender()
    doc = text_message_event(s, event_id="ev-dup")
    for encrypted in (True, False, True):
        body, headers = s.wire(doc, encrypted=encrypted)
        assert _post(client, body, headers).status_code == 200
    assert len(_receipts(services)) == 1
    assert Queue("default", connection=redis_conn).count == 1


def test_plain_event_signed_with_key_is_accepted(client, services):
    s = sender()
    body, headers = s.wire(text_message_event(s, event_id="ev-plain"), encrypted=False)
    assert _post(client, body, headers).status_code == 200
    assert [r.event_id for r in _receipts(services)] == ["ev-plain"]


def test_bad_signature_missing_headers_and_wrong_token(client, services):
    s = sender()
    body, headers = s.wire(text_message_event(s), encrypted=True)
    bad_sig = dict(headers, **{"X-Lark-Signature": "f" * 64})
    assert _post(client, body, bad_sig).status_code == 401
    no_headers = {"Content-Type": "application/json"}
    response = _post(client, body, no_headers)
    assert response.status_code == 401 and response.get_json()["reason"] == "missing_signature"
    forged = sender(token="forged-token")
    body, headers = forged.wire(text_message_event(forged), encrypted=True)
    response = _post(client, body, headers)
    assert response.status_code == 401 and response.get_json()["reason"] == "bad_token"
    # a body signed for one request replayed with another body
    other, _ = s.wire(text_message_event(s), encrypted=True)
    assert _post(client, other, headers).status_code == 401
    assert _receipts(services) == []


def test_garbage_bodies_are_400_with_reason(client, services):
    for body in (b"", b"nope", b"[]", b'{"encrypt": "@@@"}', b'{"encrypt": "AAAA"}'):
        response = _post(client, body)
        assert response.status_code == 400, body
        assert response.get_json()["msg"]
    assert _receipts(services) == []


def test_shapeless_but_authentic_body_is_400(client, services):
    s = sender()
    doc = {"schema": "2.0", "header": {"token": SANDBOX_VERIFICATION_TOKEN, "event_type": "x"},
           "event": {}}
    body, headers = s.wire(doc, encrypted=True)
    response = _post(client, body, headers)
    assert response.status_code == 400
    assert "event_id" in response.get_json()["msg"]


def test_unknown_event_type_is_recorded_not_enqueued(client, services, redis_conn):
    s = sender()
    doc = text_message_event(s, event_id="ev-unknown", event_type="contact.user.created_v3")
    body, headers = s.wire(doc, encrypted=True)
    response = _post(client, body, headers)
    assert response.status_code == 200
    [receipt] = _receipts(services)
    assert (receipt.event_type, receipt.status) == ("contact.user.created_v3", "unhandled")
    assert Queue("default", connection=redis_conn).count == 0
    # and its re-delivery is a duplicate too
    assert _post(client, *s.wire(doc, encrypted=False)).status_code == 200
    assert len(_receipts(services)) == 1


def test_redis_down_still_records_and_answers_200(client, services):
    from bot.queue import connect_redis

    broken = services.queues["default"]
    original = broken.connection
    broken.connection = connect_redis("redis://127.0.0.1:1/0")
    try:
        s = sender()
        response = _post(client, *s.wire(text_message_event(s, event_id="ev-nored"), encrypted=True))
    finally:
        broken.connection = original
    assert response.status_code == 200
    [receipt] = _receipts(services)
    assert receipt.status == "received"  # left for the sweeper


def test_database_down_is_503_not_500(client, services):
    from bot.db import make_engine

    original = services.engine
    services.engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/gone")
    try:
        s = sender()
        response = _post(client, *s.wire(text_message_event(s), encrypted=True))
    finally:
        services.engine.dispose()
        services.engine = original
    assert response.status_code == 503
    assert response.get_json()["msg"] == "storage unavailable, retry later"


# -- item 8: legacy "message card request URL" callbacks ---------------------------------------

RETRY = {"action": "export_retry", "run": 1}


@pytest.fixture
def live_webhook(app, sandbox):
    """The bridge's app on a loopback port, the sandbox delivering to it; both stopped after."""
    from werkzeug.serving import make_server

    base_url, state = sandbox
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="bridge-webhook", daemon=True)
    thread.start()
    state.sender.config.webhook_url = f"http://127.0.0.1:{server.server_port}/webhook/event"
    try:
        yield base_url, state
    finally:
        state.sender.config.webhook_url = ""
        server.shutdown()
        thread.join(30)


def _retry_card(state) -> str:
    content = {"config": {"update_multi": True}, "elements": [{"tag": "action", "actions": [
        {"tag": "button", "text": {"tag": "plain_text", "content": "重试失败的窗口"}, "value": RETRY}]}]}
    message, _ = state.add_bot_message(chat_id="oc_sandbox_default_chat", msg_type="interactive",
                                       content=json.dumps(content, ensure_ascii=False), uuid=None)
    return message.message_id


def test_legacy_card_callback_is_400_naming_the_setting_to_change(live_webhook, services):
    base_url, state = live_webhook
    card_id = _retry_card(state)
    for encrypted in (False, True):
        clicked = httpx.post(f"{base_url}/sandbox/card-action", json={
            "message_id": card_id, "value": RETRY, "legacy": True, "encrypted": encrypted}).json()
        assert clicked["webhook_status"] == 400, clicked
        answer = clicked["webhook_answer"]
        assert answer["reason"] == "legacy_card_callback", answer
        assert "card.action.trigger" in answer["msg"] and "Callback configuration" in answer["msg"]
    assert _receipts(services) == []  # nothing unverified was recorded
    # the same button through the callback the README tells you to configure is taken
    clicked = httpx.post(f"{base_url}/sandbox/card-action", json={"message_id": card_id, "value": RETRY})
    assert clicked.json()["webhook_status"] == 200
    [receipt] = _receipts(services)
    assert receipt.event_type == "card.action.trigger"


def test_legacy_card_url_challenge_is_answered_only_with_the_token(live_webhook, services):
    base_url, _ = live_webhook
    # indistinguishable from the event subscription's own plaintext challenge: answered the same way
    ok = httpx.post(f"{base_url}/sandbox/card-url-verification", json={"challenge": "legacy-abc"}).json()
    assert (ok["webhook_status"], ok["webhook_answer"]) == (200, {"challenge": "legacy-abc"})
    forged = httpx.post(f"{base_url}/sandbox/card-url-verification", json={"token": "not-the-token"}).json()
    assert forged["webhook_status"] == 401 and forged["webhook_answer"]["reason"] == "bad_token"
    assert _receipts(services) == []


def test_in_websocket_mode_the_webhook_is_closed(client, services):
    """FEISHU_EVENT_MODE=websocket: events come over the long connection, and a webhook nobody is
    meant to use stays shut — even to a correctly signed event."""
    services.settings = services.settings.model_copy(update={"feishu_event_mode": "websocket"})
    s = sender()
    body, headers = s.wire(text_message_event(s, event_id="ev-mode"), encrypted=True)
    response = _post(client, body, headers)
    assert response.status_code == 404
    assert response.get_json()["reason"] == "websocket_mode"
    assert "FEISHU_EVENT_MODE" in response.get_json()["msg"]
    assert _receipts(services) == []
