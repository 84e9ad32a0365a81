"""Pure OAuth logic for Feishu user tokens: URLs, token responses, error classes, timing.

Feishu's v2 token endpoint (`POST /open-apis/authen/v2/oauth/token`) answers flat JSON:
`{code: 0, access_token, expires_in, refresh_token, refresh_token_expires_in, scope,
token_type}` on success, `{code, error, error_description}` otherwise. Refresh tokens are
single-use: each refresh returns a new one and the old one stops working. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

TOKEN_PATH = "/open-apis/authen/v2/oauth/token"
AUTHORIZE_PATH = "/open-apis/authen/v1/authorize"
OFFLINE_ACCESS = "offline_access"

# The grant itself is gone: refreshing again cannot help, the user must authorise again.
# (Assumed from Feishu's v2 token error table; see docs/sandbox.md.)
GRANT_INVALID_CODES = frozenset({
    20026,  # refresh token invalid
    20037,  # refresh token expired
    20064,  # refresh token revoked
    20073,  # refresh token already used
    20003,  # authorization code not found
    20004,  # authorization code expired
})
TRANSIENT_CODES = frozenset({20050, 99991400})  # server busy / rate limited


class ErrorClass(StrEnum):
    TRANSIENT = "transient"  # network, 5xx, rate limit: retry with backoff, keep the grant
    GRANT_INVALID = "grant_invalid"  # expired, revoked or used refresh token: re-authorise
    OTHER = "other"  # e.g. wrong app secret: not the grant's fault; keep it, report the error


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str | None
    expires_at: datetime
    refresh_expires_at: datetime | None
    scopes: str


class OAuthError(Exception):
    def __init__(self, kind: ErrorClass, code: int | None, message: str) -> None:
        super().__init__(f"{message} (code={code}, {kind.value})")
        self.kind = kind
        self.code = code
        self.message = message


def scopes_with_offline_access(scopes: str) -> str:
    """A refresh token is issued only when offline_access was requested."""
    wanted = scopes.split()
    if OFFLINE_ACCESS not in wanted:
        wanted.append(OFFLINE_ACCESS)
    return " ".join(wanted)


def authorize_url(accounts_url: str, app_id: str, redirect_uri: str, scopes: str, state: str) -> str:
    query = urlencode({
        "client_id": app_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": scopes_with_offline_access(scopes),
        "state": state,
    })
    return f"{accounts_url.rstrip('/')}{AUTHORIZE_PATH}?{query}"


def code_grant_body(app_id: str, app_secret: str, code: str, redirect_uri: str) -> dict[str, str]:
    return {"grant_type": "authorization_code", "client_id": app_id, "client_secret": app_secret,
            "code": code, "redirect_uri": redirect_uri}


def refresh_grant_body(app_id: str, app_secret: str, refresh_token: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "client_id": app_id, "client_secret": app_secret,
            "refresh_token": refresh_token}


def classify(http_status: int | None, code: int | None, error: str | None = None) -> ErrorClass:
    if http_status is None or http_status >= 500 or http_status == 429:
        return ErrorClass.TRANSIENT
    if code in TRANSIENT_CODES:
        return ErrorClass.TRANSIENT
    if code in GRANT_INVALID_CODES or error == "invalid_grant":
        return ErrorClass.GRANT_INVALID
    return ErrorClass.OTHER


def parse_token_response(http_status: int, body: Any, now: datetime) -> TokenPair:
    """The new token pair, or raises OAuthError classified for the caller's retry decision."""
    if not isinstance(body, dict):
        raise OAuthError(classify(http_status, None), None, f"token endpoint answered HTTP {http_status} "
                         "without a JSON object")
    code = body.get("code")
    code = code if isinstance(code, int) else None
    if http_status != 200 or code not in (0, None) or not body.get("access_token"):
        message = str(body.get("error_description") or body.get("msg") or body.get("error")
                      or f"HTTP {http_status}")
        raise OAuthError(classify(http_status, code, body.get("error")), code, message)
    refresh_in = body.get("refresh_token_expires_in")
    return TokenPair(
        access_token=str(body["access_token"]),
        refresh_token=str(body["refresh_token"]) if body.get("refresh_token") else None,
        expires_at=now + timedelta(seconds=int(body.get("expires_in") or 0)),
        refresh_expires_at=now + timedelta(seconds=int(refresh_in)) if refresh_in else None,
        scopes=str(body.get("scope") or ""),
    )


def needs_refresh(expires_at: datetime, now: datetime, margin_seconds: float) -> bool:
    return expires_at - now <= timedelta(seconds=margin_seconds)


def seconds_left(at: datetime | None, now: datetime) -> int | None:
    return None if at is None else int((at - now).total_seconds())
