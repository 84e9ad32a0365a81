"""Secrets are shown as a fixed mask plus at most their last four characters.

A value is "secret" because it came from a SecretStr setting or because a caller
registered it; the log formatter scrubs every registered value from each line it emits.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Iterable

_MIN_SCRUB_LENGTH = 6  # shorter values would scrub ordinary words out of logs

_lock = threading.Lock()
_registered: set[str] = set()
_pattern: re.Pattern[str] | None = None


def mask(value: str | None) -> str:
    """Render a secret for humans: enough to tell two apart, never enough to use."""
    if not value:
        return "(unset)"
    if len(value) < 12:
        return "****"
    return f"****{value[-4:]}"


# Query parameters that carry a credential in database / Redis URLs (libpq reads `password`
# from the query too, e.g. `postgresql://u@h/db?password=…`).
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&](?:password|passwd|pwd|pass|sslpassword|secret|token|access_token)=)[^&#\s]*",
    re.IGNORECASE,
)


def mask_url(url: str) -> str:
    """Hide the password in scheme://user:password@host URLs and in `?password=` queries."""
    from sqlalchemy.engine import make_url

    return _QUERY_SECRET.sub(lambda m: m.group("key") + "***", _mask_userinfo(url, make_url))


def _mask_userinfo(url: str, make_url) -> str:
    if "://" not in url or "@" not in url:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"


def register_secrets(values: Iterable[str | None]) -> None:
    """Remember values that must never appear in logs or responses."""
    global _pattern
    with _lock:
        for value in values:
            if value and len(value) >= _MIN_SCRUB_LENGTH:
                _registered.add(value)
        if _registered:
            ordered = sorted(_registered, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(v) for v in ordered))


# Credentials that travel in URLs (the OAuth callback's code, tokens in query strings, the long
# connection's access_key and ticket): masked
# in every line whether or not anyone registered them.
_URL_CREDENTIAL = re.compile(
    r"(?P<key>[?&](?:code|state|access_token|refresh_token|token|client_secret|access_key|ticket)=)"
    r"[^&\s\"']+"
)


def scrub(text: str) -> str:
    """Replace every registered secret, and credentials in URL query strings, with masks."""
    if not text:
        return text
    if "=" in text:
        text = _URL_CREDENTIAL.sub(lambda m: m.group("key") + "****", text)
    pattern = _pattern
    if pattern is None:
        return text
    return pattern.sub(lambda m: mask(m.group(0)), text)


def clear_registered() -> None:
    """For tests that need a clean slate."""
    global _pattern
    with _lock:
        _registered.clear()
        _pattern = None


def keyed_mark(key: str, secret: str) -> str:
    """What to store in place of a secret to recognise it later (e.g. the ADMIN_TOKEN a session
    or a login began under): an HMAC keyed by a value stored beside it, so the store holds no
    plain hash to guess the secret against offline."""
    return hmac.new(key.encode(), secret.encode(), hashlib.sha256).hexdigest()
