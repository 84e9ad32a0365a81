"""`POST /webhook/event`: verify, record, enqueue, answer — nothing else runs in the request.

lark-oapi's dispatcher does the Feishu-specific work (challenge, decryption, token and
signature checks). Its refusals all come back as HTTP 500, which would make Feishu
re-deliver junk forever, so a refusal is re-examined by `bot.intake.parse.examine` and answered
with the right 4xx; authentic events of types we have no handler for are recorded and 200.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import lark_oapi as lark
from flask import Blueprint, Flask, current_app, g, jsonify, request
from lark_oapi.adapter.flask import parse_req, parse_resp

from bot.intake.accept import CARD_TOAST, Outcome, accept, answer_for
from bot.intake.freshness import stale_reason
from bot.intake.parse import (
    CONFIGURATION_REASONS,
    HEADER_TIMESTAMP,
    ParsedEvent,
    Reason,
    Refusal,
    ShapeError,
    event_from_sdk,
    examine,
)
from bot.intake.recorder import Recorder
from bot.intake.routes import HANDLED_TYPES
from bot.metrics import EVENTS_REJECTED
from bot.services import Services
from bot.web import app_services
from bot.web.policy import EVENT_SECRETS_ERROR, WEBSOCKET_MODE_ERROR, webhook_unprotected

log = logging.getLogger(__name__)

bp = Blueprint("webhook", __name__)

INTAKE = "feishu_bridge.intake"
MAX_BODY_BYTES = 1 << 20  # Feishu events are a few KiB; anything this big is not one

# The hot path's answers, serialised once.
_JSON = {"Content-Type": "application/json"}
_SUCCESS = ('{"code":0,"msg":"success"}', 200, _JSON)
_DUPLICATE = ('{"code":0,"msg":"duplicate"}', 200, _JSON)
_CARD_TOAST = (json.dumps(CARD_TOAST, ensure_ascii=False, separators=(",", ":")), 200, _JSON)


@dataclass(frozen=True)
class Intake:
    """The webhook's per-process parts: the SDK dispatcher and the group-commit recorder."""

    dispatcher: lark.EventDispatcherHandler
    recorder: Recorder


def install(app: Flask, services: Services) -> None:
    app.extensions[INTAKE] = Intake(build_dispatcher(services, sorted(HANDLED_TYPES)), Recorder(services))


def _intake() -> Intake:
    return current_app.extensions[INTAKE]


def build_dispatcher(services: Services, handled_types: list[str]) -> lark.EventDispatcherHandler:
    """The SDK dispatcher, with a capturing processor for every type we handle."""
    settings = services.settings
    builder = lark.EventDispatcherHandler.builder(
        settings.feishu_encrypt_key.get_secret_value(),
        settings.feishu_verification_token.get_secret_value(),
    )
    for event_type in handled_types:
        builder = builder.register_p2_customized_event(event_type, _capture)
    return builder.build()


def _capture(data: Any) -> None:
    # Runs inside dispatcher.do(), in this request's thread: hand the event back to the view.
    g.feishu_event = data


def _refuse(refusal: Refusal):
    EVENTS_REJECTED.labels(refusal.reason.value).inc()
    # the app's configuration to fix (a legacy card URL, no event secret), not noise: say so louder
    level = logging.WARNING if refusal.reason in CONFIGURATION_REASONS else logging.INFO
    log.log(level, "webhook request refused",
            extra={"reason": refusal.reason.value, "detail": refusal.detail})
    return jsonify(code=refusal.status, msg=refusal.detail, reason=refusal.reason.value), refusal.status


def _accept(event: ParsedEvent, *, handled: bool):
    outcome = accept(_intake().recorder, event, handled=handled)
    if outcome is Outcome.UNAVAILABLE:
        # Not the sender's fault: 503 makes Feishu re-deliver once storage is back.
        return jsonify(code=503, msg="storage unavailable, retry later"), 503
    if outcome is Outcome.DUPLICATE:
        return _DUPLICATE
    return _CARD_TOAST if answer_for(event) is not None else _SUCCESS


def _stale_timestamp(services: Services) -> Refusal | None:
    """A signed request from outside the replay window (bot/intake/freshness.py). Only with an
    encrypt key: without one the timestamp is not signed, so checking it proves nothing."""
    settings = services.settings
    if not settings.feishu_encrypt_key.get_secret_value():
        return None
    reason = stale_reason(request.headers.get(HEADER_TIMESTAMP), time.time(),
                          settings.webhook_timestamp_window_seconds)
    return None if reason is None else Refusal(Reason.STALE_TIMESTAMP, reason)


@bp.post("/webhook/event")
def receive_event():
    services, intake = app_services(), _intake()

    if services.settings.feishu_event_mode != "webhook":
        # Only one way in: a URL nobody is meant to use is a door nobody watches.
        return _refuse(Refusal(Reason.WEBSOCKET_MODE, WEBSOCKET_MODE_ERROR))
    if webhook_unprotected(services.settings):
        # Fail closed: with no secret to check, any POST could pose as an admin's message.
        return _refuse(Refusal(Reason.UNCONFIGURED, EVENT_SECRETS_ERROR))
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _refuse(Refusal(Reason.REJECTED, "request body too large"))
    stale = _stale_timestamp(services)
    if stale is not None:
        return _refuse(stale)
    body = request.get_data(cache=True)
    g.feishu_event = None
    answer = intake.dispatcher.do(parse_req())

    if answer.status_code == 200:
        data = g.pop("feishu_event", None)
        if data is None:
            return parse_resp(answer)  # url_verification: the SDK wrote the challenge reply
        try:
            event = event_from_sdk(data)
        except ShapeError as exc:
            return _refuse(Refusal(Reason.SHAPELESS, str(exc)))
        return _accept(event, handled=True)

    settings = services.settings
    verdict = examine(
        body,
        dict(request.headers),
        settings.feishu_encrypt_key.get_secret_value(),
        settings.feishu_verification_token.get_secret_value(),
    )
    if isinstance(verdict, Refusal):
        return _refuse(verdict)
    if verdict.event_type in HANDLED_TYPES:
        # Authentic and of a handled type, yet the SDK refused it: do not guess, refuse.
        return _refuse(Refusal(Reason.REJECTED, "event refused by the SDK dispatcher"))
    return _accept(verdict, handled=False)
