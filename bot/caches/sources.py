"""Pure parsing of what users give as a source: Feishu URLs, bare tokens, intervals. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlparse

# wiki: a wiki node, mirrored as whatever document it holds; wiki-space: a wiki node and every
# document under it (e.g. a folder of guide docs).
KINDS = ("bitable", "sheet", "doc", "wiki", "wiki-space")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{6,128}$")

# The path segment before the token in a Feishu document URL.
_URL_KINDS = {"base": "bitable", "sheets": "sheet", "docx": "doc", "wiki": "wiki"}
# Legacy token prefixes: enough to guess the kind of a bare token (new tokens have none).
_PREFIX_KINDS = (("wik", "wiki"), ("bas", "bitable"), ("sht", "sheet"), ("dox", "doc"))


class SourceError(ValueError):
    """A source the user declared cannot be used; the message says why."""


@dataclass(frozen=True)
class SourceRef:
    kind: str
    token: str
    table_id: str | None = None  # a bitable URL may point at one table (`?table=tbl…`)


def parse_source(value: str, kind: str | None = None) -> SourceRef:
    """A Feishu URL (…/base/<token>, /sheets/, /docx/, /wiki/) or a bare token (+ kind)."""
    value = value.strip()
    if kind is not None and kind not in KINDS:
        raise SourceError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if value.startswith(("http://", "https://")):
        url = urlparse(value)
        parts = [p for p in url.path.split("/") if p]
        for i, part in enumerate(parts[:-1]):
            if part in _URL_KINDS:
                token = parts[i + 1]
                found = _URL_KINDS[part]
                table = dict(q.split("=", 1) for q in url.query.split("&") if "=" in q).get("table")
                if found == "wiki":
                    if kind not in (None, "wiki", "wiki-space"):
                        raise SourceError(f"the URL is a wiki node, not a {kind}")
                elif kind and kind != found:
                    raise SourceError(f"the URL is a {found}, not a {kind}")
                _check_token(token)
                return SourceRef(kind or found, token, table)
        raise SourceError("not a Feishu document URL (expected /base/, /sheets/, /docx/ or /wiki/ in it)")
    _check_token(value)
    if kind:
        return SourceRef(kind, value)
    for prefix, guessed in _PREFIX_KINDS:
        if value.startswith(prefix):
            return SourceRef(guessed, value)
    raise SourceError("cannot tell what kind of document this token is; pass --kind")


def _check_token(token: str) -> None:
    if not TOKEN_RE.match(token):
        raise SourceError(f"{token!r} does not look like a Feishu token")


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise SourceError(f"source name {name!r}: use lower-case letters, digits and _ (start with a letter)")
    return name


def parse_interval(text: str) -> int:
    """'90s', '15m', '1h', '2d' or plain hours ('2', '0.5') → seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise SourceError(f"interval {text!r}: use e.g. 30m, 1h, 2d")
    number, unit = float(match.group(1)), match.group(2) or "h"
    seconds = int(number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])
    if seconds < 60:
        raise SourceError("interval must be at least a minute")
    return seconds


def format_interval(seconds: int) -> str:
    """The inverse of parse_interval, for status lines: 3600 → '1h', 5400 → '90m'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


SUBSCRIBE_FORBIDDEN = 1069603  # HTTP 403: no manage rights (drive-v1 subscribe's error table)


def subscribe_refusal(code: int | None, msg: str | None) -> str:
    """Why Feishu would not send a bitable's change events, in words an operator can act on."""
    if code == SUBSCRIBE_FORBIDDEN:
        return (f"subscribe refused (code {code}): the app is not the bitable's owner or manager; "
                "add it as a manager (document ⋯ → 添加文档应用, 可管理) to get change events")
    return f"subscribe failed (code {code}: {msg})"


def events_status(obj_type: str | None, subscribed: bool, events_error: str | None,
                  interval_seconds: int) -> str | None:
    """How a source's cache keeps up: by change events, or only by its scheduled full syncs.
    None where change events do not apply (sheets, docs)."""
    if obj_type != "bitable":
        return None
    if events_error:
        return f"no change events: {events_error}, refreshed every {format_interval(interval_seconds)}"
    if subscribed:
        return "change events"
    return "change events after the first sync"
