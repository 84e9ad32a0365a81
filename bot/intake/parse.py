"""Pure webhook-intake logic: what an accepted event looks like, and why a request was refused.

lark-oapi's dispatcher is the authority on accepting a request (challenge, decryption,
verification token, signature). It answers every refusal with HTTP 500, though, so when it
refuses we re-examine the request here to give the caller the right 4xx and a reason. No I/O.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

HEADER_TIMESTAMP = "X-Lark-Request-Timestamp"
HEADER_NONCE = "X-Lark-Request-Nonce"
HEADER_SIGNATURE = "X-Lark-Signature"
MAX_ID_LENGTH = 128


class Reason(StrEnum):
    """Why a request was refused: a closed set, so it can label metrics."""

    EMPTY_BODY = "empty_body"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    NO_ENCRYPT_KEY = "no_encrypt_key"
    UNDECRYPTABLE = "undecryptable"
    MISSING_SIGNATURE = "missing_signature"
    BAD_SIGNATURE = "bad_signature"
    BAD_TOKEN = "bad_token"
    SHAPELESS = "shapeless"
    REJECTED = "rejected"
    LEGACY_CARD = "legacy_card_callback"
    STALE_TIMESTAMP = "stale_timestamp"  # signed timestamp outside the replay window (freshness.py)
    UNCONFIGURED = "unconfigured"  # no secret to authenticate events with (outside the sandbox)
    WEBSOCKET_MODE = "websocket_mode"  # FEISHU_EVENT_MODE=websocket: events come over the connection


# Refusals that point at the app's configuration rather than at a bad request: logged louder.
CONFIGURATION_REASONS = frozenset({Reason.LEGACY_CARD, Reason.UNCONFIGURED, Reason.WEBSOCKET_MODE})


STATUS_FOR_REASON: dict[Reason, int] = {
    Reason.MISSING_SIGNATURE: 401,
    Reason.BAD_SIGNATURE: 401,
    Reason.BAD_TOKEN: 401,
    Reason.STALE_TIMESTAMP: 401,
    Reason.UNCONFIGURED: 503,
    Reason.WEBSOCKET_MODE: 404,
    Reason.NO_ENCRYPT_KEY: 400,
}


@dataclass(frozen=True)
class ParsedEvent:
    """An authenticated event, reduced to what the receipt stores."""

    event_id: str
    event_type: str
    schema_version: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Refusal:
    reason: Reason
    detail: str

    @property
    def status(self) -> int:
        return STATUS_FOR_REASON.get(self.reason, 400)


# What a legacy "message card request URL" (消息卡片请求网址) request is told. Its bodies carry no
# event id and a `token` that is the card-update credential, not the verification token; its
# SHA-1 signature is another scheme again. Refusing it is simpler and safer than a second intake.
LEGACY_CARD_HINT = (
    "legacy message card request URL (消息卡片请求网址) callback refused: subscribe to "
    "card.action.trigger under Events & Callbacks → Callback configuration, with this same URL, "
    "and clear the message card request URL in the bot settings"
)


class ShapeError(ValueError):
    """The body decrypted and authenticated, but is not an event we can record."""


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable()


def is_legacy_card_callback(doc: Mapping[str, Any]) -> bool:
    """A click posted to the legacy message card request URL: no schema, no uuid, and the card's
    `open_message_id` and an `action` object at the top level (its own challenge is shaped like
    the event subscription's and cannot be told apart)."""
    return (
        doc.get("schema") in (None, "")
        and doc.get("uuid") is None
        and isinstance(doc.get("action"), Mapping)
        and "open_message_id" in doc
    )


def event_from_plain(doc: Mapping[str, Any]) -> ParsedEvent:
    """Validate a decrypted schema 2.0 (or legacy 1.0) event and drop its verification token."""
    if doc.get("schema") is not None:
        header = doc.get("header")
        if not isinstance(header, Mapping):
            raise ShapeError("schema 2.0 event without a 'header' object")
        event_id, event_type = header.get("event_id"), header.get("event_type")
        if not _valid_id(event_id):
            raise ShapeError("header.event_id must be a non-empty string (≤128 chars)")
        if not _valid_id(event_type):
            raise ShapeError("header.event_type must be a non-empty string (≤128 chars)")
        event = doc.get("event")
        if not isinstance(event, Mapping):
            raise ShapeError("schema 2.0 event without an 'event' object")
        clean_header = {k: v for k, v in header.items() if k != "token"}
        payload = {"schema": str(doc["schema"]), "header": clean_header, "event": dict(event)}
        return ParsedEvent(event_id, event_type, str(doc["schema"])[:8], payload)
    if doc.get("uuid") is not None:
        event = doc.get("event")
        if not isinstance(event, Mapping):
            raise ShapeError("schema 1.0 event without an 'event' object")
        event_id, event_type = doc.get("uuid"), event.get("type")
        if not _valid_id(event_id) or not _valid_id(event_type):
            raise ShapeError("schema 1.0 event needs string 'uuid' and 'event.type'")
        payload = {k: v for k, v in doc.items() if k != "token"}
        return ParsedEvent(event_id, event_type, "1.0", payload)
    raise ShapeError("neither a schema 2.0 event (schema/header/event) nor a 1.0 one (uuid/event)")


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def examine(
    body: bytes,
    headers: Mapping[str, str],
    encrypt_key: str,
    verification_token: str,
) -> ParsedEvent | Refusal:
    """Re-check a request the SDK refused. An authentic event comes back parsed (the SDK
    refuses those only when no processor is registered for their type); anything else
    comes back as a Refusal naming the first problem found."""
    if not body or not body.strip():
        return Refusal(Reason.EMPTY_BODY, "request body is empty")
    try:
        outer = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: `[[[[…` nested 100k deep
        return Refusal(Reason.NOT_JSON, "request body is not valid JSON")
    if not isinstance(outer, dict):
        return Refusal(Reason.NOT_OBJECT, "request body must be a JSON object")

    doc: Any = outer
    encrypted = outer.get("encrypt")
    if encrypted is not None and encrypted != "":
        if not encrypt_key:
            return Refusal(Reason.NO_ENCRYPT_KEY, "body is encrypted but FEISHU_ENCRYPT_KEY is unset")
        if not isinstance(encrypted, str):
            return Refusal(Reason.UNDECRYPTABLE, "'encrypt' must be a base64 string")
        from lark_oapi.core.utils.decryptor import AESCipher  # slow to import; the web app has it loaded

        try:
            plain = AESCipher(encrypt_key).decrypt_str(encrypted)
        except (ValueError, binascii.Error, UnicodeDecodeError, TypeError):
            return Refusal(Reason.UNDECRYPTABLE, "cannot decrypt 'encrypt' with the configured key")
        try:
            doc = json.loads(plain)
        except (ValueError, RecursionError):
            return Refusal(Reason.UNDECRYPTABLE, "decrypted body is not JSON")
        if not isinstance(doc, dict):
            return Refusal(Reason.NOT_OBJECT, "decrypted body must be a JSON object")

    if is_legacy_card_callback(doc):
        return Refusal(Reason.LEGACY_CARD, LEGACY_CARD_HINT)  # before the token: its token is not ours

    header = doc.get("header")
    is_v2 = doc.get("schema") not in (None, "")
    token = header.get("token") if is_v2 and isinstance(header, dict) else doc.get("token")
    is_challenge = doc.get("type") == "url_verification"

    if verification_token and (not encrypt_key or is_challenge or token is not None):
        if not isinstance(token, str) or not hmac.compare_digest(
            token.encode(), verification_token.encode()
        ):
            return Refusal(Reason.BAD_TOKEN, "verification token does not match")
    elif token is not None and verification_token != token:
        return Refusal(Reason.BAD_TOKEN, "verification token does not match")
    if is_challenge:
        if not isinstance(doc.get("challenge"), str):
            return Refusal(Reason.SHAPELESS, "url_verification without a string 'challenge'")
        return Refusal(Reason.REJECTED, "url_verification refused")

    if encrypt_key:
        ts, nonce, sig = (_header(headers, h) for h in (HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE))
        if ts is None or nonce is None or sig is None:
            return Refusal(
                Reason.MISSING_SIGNATURE,
                "missing X-Lark-Request-Timestamp / X-Lark-Request-Nonce / X-Lark-Signature",
            )
        if not hmac.compare_digest(signature(ts, nonce, encrypt_key, body), sig):
            return Refusal(Reason.BAD_SIGNATURE, "X-Lark-Signature does not match the body")

    try:
        return event_from_plain(doc)
    except ShapeError as exc:
        return Refusal(Reason.SHAPELESS, str(exc))



def event_from_sdk(data: Any) -> ParsedEvent:
    """Turn the SDK's CustomizedEvent back into the plain document it was parsed from."""
    if getattr(data, "schema", None):
        h = data.header
        header = None if h is None else {
            "event_id": h.event_id,
            "event_type": h.event_type,
            "create_time": h.create_time,
            "tenant_key": h.tenant_key,
            "app_id": h.app_id,
        }
        doc: dict[str, Any] = {"schema": data.schema, "header": header, "event": data.event}
    else:
        doc = {"uuid": data.uuid, "ts": data.ts, "type": data.type, "event": data.event}
    return event_from_plain(doc)
