"""A fictional ads platform's API, modelled on Ocean Engine's (巨量引擎) Marketing API (issue 17).

Not Feishu: it does not pass `sandbox.guard.open_api`. Two front doors onto one grant store:
the platform's own refresh (`/ads/open_api/oauth2/refresh_token/`, JSON in, `{code, message,
request_id, data}` out, always HTTP 200) and a standard OAuth2 refresh (`/ads/oauth2/token`,
RFC 6749 §6 and §5.2). Data endpoints take the `Access-Token` header and signal token errors in
the body (HTTP 200). docs/sandbox.md lists every rule and its source.
"""

from __future__ import annotations

import base64
import re
from datetime import date
from typing import Any
from urllib.parse import unquote

from flask import Blueprint, Response, jsonify, request

from sandbox import ads_state as ads
from sandbox.guard import state
from sandbox.seed_ads import ADS_APP_ID, ADS_SECRET, ADVERTISER_NAMES, ADVERTISERS, daily_rows

bp = Blueprint("sandbox_ads", __name__, url_prefix="/ads")

REFRESH_FIELDS = ("app_id", "secret", "grant_type", "refresh_token")
REFRESH_OUTCOMES = {"invalid": (ads.REFRESH_INVALID, "refresh_token invalid"),
                    "used": (ads.REFRESH_INVALID, "refresh_token invalid"),
                    "revoked": (ads.REFRESH_INVALID, "refresh_token invalid"),
                    "expired": (ads.REFRESH_EXPIRED, "refresh_token expired")}
OAUTH2_DESCRIPTIONS = {"invalid": "refresh token invalid", "used": "refresh token already used",
                       "revoked": "refresh token revoked", "expired": "refresh token expired"}
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def world() -> ads.AdsWorld:
    return state().ads


def _answer(code: int, message: str, data: dict[str, Any] | None = None, status: int = 200,
            **extra: Any) -> Response:
    """The platform's envelope; the call is recorded."""
    w = world()
    response = jsonify(code=code, message=message, request_id=w.request_id(), data=data or {})
    response.status_code = status
    if status == 429:
        response.headers["Retry-After"] = "1"
    w.record(request.method, request.path, status, code, **extra)
    return response


def _fault_answer(status: int, **extra: Any) -> Response:
    if status == 429:
        return _answer(ads.RATE_LIMITED, "too many requests (sandbox fault)", status=429, **extra)
    return _answer(ads.SERVER_ERROR, "internal error (sandbox fault)", status=500, **extra)


# -- the platform's own refresh -----------------------------------------------------------


@bp.post("/open_api/oauth2/refresh_token/")
def refresh_ads_style():
    w = world()
    fault = w.fault("token")
    if fault is not None:
        w.log_refresh("ads", str(fault))
        return _fault_answer(fault)
    code, message, data = _refresh_ads_style(w, request.get_json(force=True, silent=True))
    w.log_refresh("ads", "ok" if code == ads.OK else str(code))
    return _answer(code, message, data)


def _refresh_ads_style(w: ads.AdsWorld, body: Any) -> tuple[int, str, dict[str, Any] | None]:
    if not isinstance(body, dict):
        return ads.MISSING_FIELD, "request body must be a JSON object", None
    missing = [name for name in REFRESH_FIELDS if body.get(name) in (None, "")]
    if missing:
        return ads.MISSING_FIELD, f"missing required field(s): {', '.join(missing)}", None
    if body["grant_type"] != "refresh_token":
        return ads.MISSING_FIELD, "grant_type must be refresh_token", None
    app_id = body["app_id"]
    if isinstance(app_id, bool) or not isinstance(app_id, str | int) or str(app_id) != ADS_APP_ID \
            or body["secret"] != ADS_SECRET:
        return ads.APP_INVALID, "app_id or secret invalid", None
    outcome, pair = w.refresh(str(body["refresh_token"]))
    if pair is None:
        return (*REFRESH_OUTCOMES[outcome], None)
    return ads.OK, "OK", pair


# -- standard OAuth2 refresh (RFC 6749 §6) -------------------------------------------------


def _oauth2(payload: dict[str, Any], status: int = 200, **headers: str) -> Response:
    response = jsonify(payload)
    response.status_code = status
    response.headers.update({"Cache-Control": "no-store", "Pragma": "no-cache", **headers})
    world().record(request.method, request.path, status, payload.get("error", 0))
    return response


def _oauth2_error(error: str, description: str, status: int = 400, **headers: str) -> Response:
    world().log_refresh("oauth2", error)
    return _oauth2({"error": error, "error_description": description}, status, **headers)


def _client_credentials() -> tuple[str | None, str | None, bool]:
    """(client_id, client_secret, by_basic): HTTP Basic (RFC 6749 §2.3.1, form-urlencoded parts)
    when the header is there, else the body's client_id / client_secret."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            client_id, _, secret = decoded.partition(":")
            return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " ")), True
        except ValueError:
            return None, None, True
    return request.form.get("client_id"), request.form.get("client_secret"), False


@bp.post("/oauth2/token")
def refresh_oauth2():
    w = world()
    fault = w.fault("token")
    if fault is not None:
        w.log_refresh("oauth2", str(fault))
        if fault == 429:
            return _oauth2({"error": "temporarily_unavailable", "error_description": "too many requests "
                            "(sandbox fault)"}, 429, **{"Retry-After": "1"})
        return _oauth2({"error": "server_error", "error_description": "internal error (sandbox fault)"}, 500)
    client_id, secret, by_basic = _client_credentials()
    if client_id != ADS_APP_ID or secret != ADS_SECRET:
        challenge = {"WWW-Authenticate": 'Basic realm="ads"'} if by_basic else {}
        return _oauth2_error("invalid_client", "client authentication failed", 401, **challenge)
    grant_type = request.form.get("grant_type", "")
    if not grant_type:
        return _oauth2_error("invalid_request", "grant_type is required")
    if grant_type != "refresh_token":
        return _oauth2_error("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    refresh_token = request.form.get("refresh_token", "")
    if not refresh_token:
        return _oauth2_error("invalid_request", "refresh_token is required")
    outcome, pair = w.refresh(refresh_token)
    if pair is None:
        return _oauth2_error("invalid_grant", OAUTH2_DESCRIPTIONS[outcome])
    w.log_refresh("oauth2", "ok")
    return _oauth2({**pair, "token_type": "Bearer"})


# -- data ------------------------------------------------------------------------------------


def _token_refusal(**extra: Any) -> Response | None:
    verdict = world().access_state(request.headers.get("Access-Token", "").strip())
    if verdict == "expired":
        return _answer(ads.ACCESS_EXPIRED, "access_token expired", **extra)
    if verdict == "invalid":
        return _answer(ads.ACCESS_INVALID, "access_token invalid", **extra)
    return None


@bp.get("/open_api/v1/advertisers/")
def advertisers():
    fault = world().fault("report")
    if fault is not None:
        return _fault_answer(fault)
    refusal = _token_refusal()
    if refusal is not None:
        return refusal
    return _answer(ads.OK, "OK", {"list": [{"advertiser_id": aid, "advertiser_name": name}
                                           for aid, name, _ in ADVERTISERS]})


def parse_day(text: str | None) -> date | None:
    if not text or not DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def rows_for(w: ads.AdsWorld, advertiser_id: str, day: date) -> list[dict[str, Any]]:
    """What the daily report lists: nothing after the platform's today (UTC+8)."""
    return [] if day > w.today() else daily_rows(advertiser_id, day)


@bp.get("/open_api/v1/report/advertiser/daily/")
def daily_report():
    w = world()
    w.count_report_call()
    advertiser_id = request.args.get("advertiser_id", "")
    text = request.args.get("date", "")
    extra = {"advertiser_id": advertiser_id, "date": text}
    fault = w.fault("report")
    if fault is not None:
        return _fault_answer(fault, **extra)
    refusal = _token_refusal(**extra)
    if refusal is not None:
        return refusal
    day = parse_day(text)
    if day is None:
        return _answer(ads.BAD_PARAMS, "date must be YYYY-MM-DD", **extra)
    if advertiser_id not in ADVERTISER_NAMES:
        return _answer(ads.BAD_PARAMS, f"advertiser_id {advertiser_id!r} not found", **extra)
    rows = rows_for(w, advertiser_id, day)
    return _answer(ads.OK, "OK", {"list": rows}, rows=len(rows), **extra)
