"""Pure security rules of the web surfaces: what a deployment must configure before it may
serve, where a login may send the browser next, and whether a request came from our own pages.
No I/O: the views and the CLI apply these answers."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from bot.config import Settings

MIN_ADMIN_TOKEN = 32  # long enough that online guessing (throttled) and offline guessing are hopeless
EVENT_SECRETS_ERROR = (
    "set FEISHU_ENCRYPT_KEY or FEISHU_VERIFICATION_TOKEN (Developer Console → Events & Callbacks "
    "→ Encryption Strategy): without either, anyone can post forged events to /webhook/event")
WEBSOCKET_MODE_ERROR = (
    "FEISHU_EVENT_MODE=websocket: events arrive over the long connection (`feishu-bridge listen`), "
    "not at this URL; set FEISHU_EVENT_MODE=webhook to receive them here")
ADMIN_TOKEN_ERROR = (
    f"ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN} characters (it guards the dashboard, /rq and the "
    "REST API); generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")


def webhook_unprotected(settings: Settings) -> bool:
    """True when no secret authenticates events: acceptable only against the local sandbox."""
    return (settings.feishu_event_mode == "webhook" and not settings.sandbox_mode
            and not settings.feishu_encrypt_key.get_secret_value()
            and not settings.feishu_verification_token.get_secret_value())


def startup_errors(settings: Settings) -> list[str]:
    """Why a web-serving process must not start with these settings (empty: it may). The sandbox
    is exempt: it talks to a loopback emulator and documents its fixed token."""
    if settings.sandbox_mode:
        return []
    errors = []
    if webhook_unprotected(settings):
        errors.append(EVENT_SECRETS_ERROR)
    token = settings.admin_token.get_secret_value()
    if token and len(token) < MIN_ADMIN_TOKEN:
        errors.append(ADMIN_TOKEN_ERROR)
    return errors


def safe_next(target: str | None) -> str:
    """Where to go after login: a same-site path, else "/". Browsers and Werkzeug strip tabs and
    newlines and read a backslash as a slash, so `/\\t/evil.com` would become `//evil.com`:
    anything with a control character, a backslash, a leading `//` or a scheme is refused."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def same_origin(headers: Mapping[str, str], host: str) -> bool:
    """Did our own pages send this request? `Sec-Fetch-Site` when the browser sends it, else the
    `Origin` (or `Referer`) host compared with ours. No evidence at all counts as cross-site: the
    cookie that makes such requests dangerous is only ever held by a browser, and browsers send
    one of these headers on every state-changing request."""
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site:
        return fetch_site in ("same-origin", "none")
    for name in ("Origin", "Referer"):
        value = headers.get(name)
        if value:
            return value != "null" and urlsplit(value).netloc.lower() == host.lower()
    return False
