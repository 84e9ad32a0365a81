"""The pure intake logic: examining refused requests and validating event shapes."""

from __future__ import annotations

import json

import pytest

from bot.intake.parse import ParsedEvent, Reason, Refusal, ShapeError, event_from_plain, examine
from sandbox.crypto import encrypt
from sandbox.state import SANDBOX_ENCRYPT_KEY as KEY
from sandbox.state import SANDBOX_VERIFICATION_TOKEN as TOKEN
from tests.helpers import sender, text_message_event


def test_authentic_encrypted_event_parses_and_drops_the_token():
    s = sender()
    doc = text_message_event(s, event_id="ev-1")
    body, headers = s.wire(doc, encrypted=True)
    result = examine(body, headers, KEY, TOKEN)
    assert isinstance(result, ParsedEvent)
    assert (result.event_id, result.event_type) == ("ev-1", "im.message.receive_v1")
    assert result.schema_version == "2.0"
    assert "token" not in result.payload["header"]
    assert result.payload["event"]["message"]["chat_id"] == "oc_test"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", Reason.EMPTY_BODY),
        (b"   ", Reason.EMPTY_BODY),
        (b"{not json", Reason.NOT_JSON),
        (b"\xff\xfe", Reason.NOT_JSON),
        (b"[1,2]", Reason.NOT_OBJECT),
        (b'"text"', Reason.NOT_OBJECT),
        (b'{"encrypt": 42}', Reason.UNDECRYPTABLE),
        (b'{"encrypt": "bm90IGNpcGhlcnRleHQ="}', Reason.UNDECRYPTABLE),
        (b'{"encrypt": "%%%"}', Reason.UNDECRYPTABLE),
    ],
)
def test_garbage_is_refused_with_a_reason(body, reason):
    result = examine(body, {}, KEY, TOKEN)
    assert isinstance(result, Refusal)
    assert result.reason == reason
    assert result.status == 400
    assert result.detail


def test_encrypted_body_without_configured_key_is_400():
    body = json.dumps({"encrypt": encrypt("{}", KEY)}).encode()
    result = examine(body, {}, "", TOKEN)
    assert isinstance(result, Refusal) and result.reason == Reason.NO_ENCRYPT_KEY and result.status == 400


def test_encrypted_with_another_key_is_undecryptable():
    body = json.dumps({"encrypt": encrypt('{"a": 1}', "some-other-key")}).encode()
    result = examine(body, {}, KEY, TOKEN)
    assert isinstance(result, Refusal) and result.reason == Reason.UNDECRYPTABLE


def test_missing_and_bad_signatures_are_401():
    s = sender()
    body, headers = s.wire(text_message_event(s), encrypted=True)
    missing = {k: v for k, v in headers.items() if k != "X-Lark-Signature"}
    assert examine(body, missing, KEY, TOKEN) == Refusal(
        Reason.MISSING_SIGNATURE,
        "missing X-Lark-Request-Timestamp / X-Lark-Request-Nonce / X-Lark-Signature",
    )
    tampered = dict(headers, **{"X-Lark-Signature": "0" * 64})
    result = examine(body, tampered, KEY, TOKEN)
    assert isinstance(result, Refusal) and result.reason == Reason.BAD_SIGNATURE and result.status == 401
    # header names are case-insensitive on the wire
    lowered = {k.lower(): v for k, v in headers.items()}
    assert isinstance(examine(body, lowered, KEY, TOKEN), ParsedEvent)


def test_wrong_verification_token_is_401_in_plain_mode():
    s = sender(encrypt_key="", token="not-the-token")
    body, headers = s.wire(text_message_event(s), encrypted=False)
    result = examine(body, headers, "", TOKEN)
    assert isinstance(result, Refusal) and result.reason == Reason.BAD_TOKEN and result.status == 401


def test_wrong_token_inside_encrypted_event_is_401():
    s = sender(token="forged-token")
    body, headers = s.wire(text_message_event(s), encrypted=True)
    result = examine(body, headers, KEY, TOKEN)
    assert isinstance(result, Refusal) and result.reason == Reason.BAD_TOKEN


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"schema": "2.0"}, "header"),
        ({"schema": "2.0", "header": {"event_type": "x"}, "event": {}}, "event_id"),
        ({"schema": "2.0", "header": {"event_id": "e", "event_type": ""}, "event": {}}, "event_type"),
        ({"schema": "2.0", "header": {"event_id": "e" * 200, "event_type": "x"}, "event": {}}, "event_id"),
        ({"schema": "2.0", "header": {"event_id": "e", "event_type": "x"}, "event": []}, "'event' object"),
        ({"uuid": "u"}, "1.0"),
        ({"hello": "world"}, "neither"),
    ],
)
def test_shapeless_events_are_named(doc, fragment):
    with pytest.raises(ShapeError, match=fragment):
        event_from_plain(doc)


def test_legacy_schema_1_event_parses():
    parsed = event_from_plain({"uuid": "u-1", "token": TOKEN, "ts": "1", "type": "event_callback",
                               "event": {"type": "app_open", "x": 1}})
    assert (parsed.event_id, parsed.event_type, parsed.schema_version) == ("u-1", "app_open", "1.0")
    assert "token" not in parsed.payload


def test_legacy_card_callbacks_are_400_naming_the_callback_to_configure():
    """The legacy "message card request URL" body (no schema, `token` = card-update credential)
    is refused whatever is configured, encrypted or not — never taken unverified, never a 500."""
    from sandbox.events import legacy_card_action

    doc = legacy_card_action(operator_open_id="ou_x", value={"action": "export_retry", "run": 1},
                             message_id="om_card", chat_id="oc_x", tenant_key="t")
    for encrypted in (False, True):
        body, headers = sender().legacy_card_wire(doc, encrypted=encrypted)
        for key, token in ((KEY, TOKEN), (KEY, ""), ("", TOKEN), ("", "")):
            if encrypted and not key:
                continue  # an encrypted body without a key is NO_ENCRYPT_KEY, as for events
            result = examine(body, headers, key, token)
            assert isinstance(result, Refusal), (encrypted, key, token)
            assert (result.reason, result.status) == (Reason.LEGACY_CARD, 400)
            assert "card.action.trigger" in result.detail and "message card request URL" in result.detail
