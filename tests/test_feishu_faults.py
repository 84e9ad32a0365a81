"""The gateway against what real Feishu does under load and on a bad network (issue 14, items 3,
9 and 10): IM's own throttle codes with their reset hint, HTML 502s from a gateway, connections
reset or stalled past the client's timeout, and the token errors as Feishu words them.

Each test drives the real lark-oapi client against the sandbox, whose fault knobs make Feishu
misbehave a known number of times, and checks what the sandbox saw (`state.api_calls`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import SimpleNamespace

import httpx
import pytest

from bot.config import Settings
from bot.feishu import Feishu, FeishuAPIError
from bot.im import reply_text, send_text
from bot.tokens.tenant_cache import RedisTokenCache, tenant_token_key
from sandbox.state import DEFAULT_CHAT_ID, DEFAULT_USER_OPEN_ID, SANDBOX_APP_ID
from tests.oauth_helpers import admin_client, authorize, expire_in

TIMEOUT = 1.0  # the client's timeout in this module (seconds); stalls outlast it


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with a short client timeout, so a stalled answer costs a second."""
    return settings.model_copy(update={"feishu_timeout_seconds": TIMEOUT})


def _wait_for(condition: Callable[[], bool], deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not met before the deadline"
        time.sleep(0.02)


def _calls(state, suffix: str) -> list[dict]:
    with state.lock:
        return [c for c in state.api_calls if c["method"] == "POST" and c["path"].endswith(suffix)]


def _user_message(state) -> str:
    message = state.add_user_message(DEFAULT_CHAT_ID, DEFAULT_USER_OPEN_ID, json.dumps({"text": "/ping"}))
    return message.message_id


def _warm_up(services, state) -> None:
    """Fetch and cache a tenant token first, so the faults below hit the call under test."""
    reply_text(services.feishu, _user_message(state), "warm-up")


def _sent(state, text: str) -> list:
    with state.lock:
        return [m for m in state.bot_sent if json.loads(m.content).get("text") == text]


# -- 3. throttle codes beyond 99991400 ---------------------------------------------------------


def test_a_chat_throttled_send_waits_the_reset_hint_and_is_sent_once(services, sandbox):
    _, state = sandbox
    _warm_up(services, state)
    services.settings.feishu_retry_max_wait = 60.0  # let the 0.3 s hint through uncapped
    state.faults.update({"throttle_chat_count": 2, "throttle_reset_seconds": 0.3})
    started = time.monotonic()
    message_id = send_text(services.feishu, DEFAULT_CHAT_ID, "throttled hello", uuid="throttle-chat-1")
    elapsed = time.monotonic() - started
    assert [c["code"] for c in _calls(state, "/im/v1/messages")] == [230020, 230020, 0]
    assert [m.message_id for m in _sent(state, "throttled hello")] == [message_id]
    assert elapsed >= 0.6  # both waits were the server's hint, not a short fixed backoff


def test_a_service_throttled_reply_without_a_hint_backs_off_and_is_sent_once(services, sandbox):
    _, state = sandbox
    _warm_up(services, state)
    state.faults.update({"throttle_tenant_count": 1, "throttle_reset_seconds": None})
    reply_text(services.feishu, _user_message(state), "after the service limit")
    assert [c["code"] for c in _calls(state, "/reply")][-2:] == [11232, 0]
    assert len(_sent(state, "after the service limit")) == 1


def _waited(reset: str | None, attempt: int = 1) -> float:
    """What the gateway waits before retrying a throttled answer carrying this reset header."""
    raw = SimpleNamespace(status_code=400, headers={"x-ogw-ratelimit-reset": reset} if reset else {})
    answer = SimpleNamespace(code=230020, raw=raw)
    outcome = SimpleNamespace(failed=False, result=lambda: answer, exception=lambda: None)
    feishu = Feishu(client=None, settings=Settings(_env_file=None), cache=None)  # type: ignore[arg-type]
    return feishu._wait(SimpleNamespace(outcome=outcome, attempt_number=attempt))  # type: ignore[arg-type]


def test_the_reset_header_is_waited_up_to_a_minute():
    assert _waited("52") == 52.0
    assert _waited("90") == 60.0  # FEISHU_RETRY_MAX_WAIT's default caps it
    assert _waited(None, attempt=3) == 2.0  # no hint: exponential backoff (0.5 s, 1 s, 2 s, …)


# -- 9. non-JSON bodies and network errors -----------------------------------------------------


def test_html_502s_are_retried_then_the_reply_is_sent_once(services, sandbox):
    _, state = sandbox
    _warm_up(services, state)
    state.faults.update({"html_502_count": 2})
    reply_text(services.feishu, _user_message(state), "through the 502s")
    calls = [(c["status"], c.get("fault")) for c in _calls(state, "/reply")[-3:]]
    assert calls == [(502, "html_502"), (502, "html_502"), (200, None)]
    assert len(_sent(state, "through the 502s")) == 1


def test_a_reset_connection_is_retried_then_the_reply_is_sent_once(services, sandbox):
    _, state = sandbox
    _warm_up(services, state)
    state.faults.update({"reset_count": 1})
    reply_text(services.feishu, _user_message(state), "after the reset")
    calls = [(c["status"], c.get("fault")) for c in _calls(state, "/reply")[-2:]]
    assert calls == [(0, "reset"), (200, None)]
    assert len(_sent(state, "after the reset")) == 1


def test_a_stalled_answer_times_out_and_the_retry_sends_once(services, sandbox):
    _, state = sandbox
    _warm_up(services, state)
    before = len(_calls(state, "/reply"))
    state.faults.update({"stall_count": 1, "stall_seconds": 4 * TIMEOUT})
    started = time.monotonic()
    reply_text(services.feishu, _user_message(state), "after the stall")
    assert time.monotonic() - started < 4 * TIMEOUT  # the client gave up on the stalled answer
    _wait_for(lambda: len(_calls(state, "/reply")) == before + 2)  # the stalled call is processed late
    assert sorted(c.get("fault", "") for c in _calls(state, "/reply")[before:]) == ["", "stall"]
    assert len(_sent(state, "after the stall")) == 1  # the uuid made the late one a no-op


@pytest.mark.parametrize("fault, kind", [("reset", "network error"), ("html_502", "non-JSON answer")])
def test_an_unreachable_feishu_ends_in_a_clear_error(services, sandbox, fault, kind):
    _, state = sandbox
    _warm_up(services, state)
    before = len(_calls(state, "/reply"))
    state.faults.update({fault: 1.0})
    with pytest.raises(FeishuAPIError) as raised:
        reply_text(services.feishu, _user_message(state), "never sent")
    state.faults.update({fault: 0.0})
    assert kind in str(raised.value) and "im.v1.message.reply" in str(raised.value)
    assert len(_calls(state, "/reply")) - before == services.settings.feishu_retries + 1
    assert _sent(state, "never sent") == []


def test_a_login_over_a_reset_connection_says_feishu_was_unreachable(app, services, sandbox):
    _, state = sandbox
    client = admin_client(app)
    approved = httpx.get(client.get("/oauth/login").headers["location"], follow_redirects=False)
    callback = approved.headers["location"].split("/oauth/callback", 1)[1]
    state.faults.update({"reset_count": 1})
    response = client.get("/oauth/callback" + callback)
    assert response.status_code == 502 and "network error" in response.get_data(as_text=True)


def test_token_refreshes_through_502s_and_resets_keep_the_grant(services, sandbox):
    _, state = sandbox
    authorize(services)
    old = services.user_tokens.get_valid_user_token()
    expire_in(services, DEFAULT_USER_OPEN_ID, 60)
    services.user_tokens._retry_wait = 0.01
    state.faults.update({"reset_count": 1, "html_502_count": 1})
    new = services.user_tokens.get_valid_user_token()
    assert new != old
    refreshes = [r for r in state.refresh_log if r["grant_type"] == "refresh_token"]
    assert [r["outcome"] for r in refreshes] == ["error", "error", "ok"]


# -- 10. error codes as Feishu sends them ------------------------------------------------------


def test_a_request_without_a_token_is_99991661(sandbox):
    base_url, _ = sandbox
    for headers in ({}, {"Authorization": "t-no-bearer-prefix"}, {"Authorization": "Bearer"}):
        answer = httpx.get(f"{base_url}/open-apis/wiki/v2/spaces/get_node", params={"token": "x"},
                           headers=headers)
        assert (answer.status_code, answer.json()["code"]) == (400, 99991661)


def test_an_empty_cached_tenant_token_is_fetched_again_once(services, sandbox):
    _, state = sandbox
    _warm_up(services, state)
    RedisTokenCache(services.redis, services.secret_box).set(
        tenant_token_key(SANDBOX_APP_ID), " ", int(time.time()) + 3600)  # sent as "Bearer  "
    before = state.token_requests
    reply_text(services.feishu, _user_message(state), "with a fresh token")
    assert state.token_requests == before + 1
    assert [c["code"] for c in _calls(state, "/reply")][-2:] == [99991661, 0]
