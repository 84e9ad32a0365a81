"""Turn a browser's "Copy as cURL" into the export endpoint's auth (pure, no I/O).

Feishu Contract's export endpoint is internal: it trusts the browser session (cookies plus a
csrf token header), not an open-platform token. The user copies the request from DevTools; we
keep URL, headers, cookies and the JSON body as a template whose date range we replace.
Both bash-style copies and Windows "cURL (cmd)" copies (^-escaped) are understood.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from bot.masking import mask

# Headers a replayed request must not copy: the HTTP client computes them itself.
DROPPED_HEADERS = {"content-length", "host", "connection", "accept-encoding"}
SECRET_HEADERS = {"cookie", "csrf-token", "x-csrf-token", "authorization"}
RANGE_KEY = "searchCooperationByCreateTime"


class CurlError(ValueError):
    """The text is not a usable curl command (the message says what is missing)."""


@dataclass(frozen=True)
class ExportAuth:
    url: str
    headers: dict[str, str]  # lower-case names, without Cookie
    cookies: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"url": self.url, "headers": self.headers, "cookies": self.cookies, "body": self.body},
            ensure_ascii=False,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ExportAuth:
        doc = json.loads(text)
        return cls(doc["url"], doc["headers"], doc["cookies"], doc.get("body") or {})

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers.setdefault("content-type", "application/json")
        return headers

    def masked(self) -> dict[str, Any]:
        """What status output may show: names and shapes, never the values of secrets."""
        return {
            "url": self.url,
            "headers": {k: (mask(v) if k in SECRET_HEADERS else v) for k, v in self.headers.items()},
            "cookies": {k: mask(v) for k, v in self.cookies.items()},
            "body": self.body,
        }


def _tokens(text: str) -> list[str]:
    text = text.strip()
    if "^\n" in text or "^\r\n" in text or text.startswith("curl ^"):
        # Windows cmd: ^ escapes the next character and ends continued lines.
        text = text.replace("^\r\n", " ").replace("^\n", " ")
        text = "".join(ch for ch in _unescape_cmd(text))
    text = text.replace("\\\r\n", " ").replace("\\\n", " ")
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise CurlError(f"cannot split the command: {exc}") from exc


def _unescape_cmd(text: str):
    escaped = False
    for ch in text:
        if escaped:
            yield ch
            escaped = False
        elif ch == "^":
            escaped = True
        else:
            yield ch


def parse_curl(text: str) -> ExportAuth:
    tokens = _tokens(text)
    if not tokens or tokens[0] != "curl":
        raise CurlError("expected a command starting with 'curl'")
    url, data, headers, cookies = "", None, {}, {}
    args = iter(tokens[1:])
    for token in args:
        if token in ("-H", "--header"):
            name, sep, value = next(args, "").partition(":")
            if not sep:
                raise CurlError(f"header without a colon: {name!r}")
            name, value = name.strip().lower(), value.strip()
            if name == "cookie":
                cookies.update(_cookies(value))
            elif name not in DROPPED_HEADERS:
                headers[name] = value
        elif token in ("-b", "--cookie"):
            cookies.update(_cookies(next(args, "")))
        elif token in ("-d", "--data", "--data-raw", "--data-binary", "--data-ascii"):
            data = next(args, "")
        elif token in ("-X", "--request", "-A", "--user-agent", "-e", "--referer"):
            value = next(args, "")
            if token in ("-A", "--user-agent"):
                headers["user-agent"] = value
            elif token in ("-e", "--referer"):
                headers["referer"] = value
        elif token in ("--url",):
            url = next(args, "")
        elif token.startswith("http://") or token.startswith("https://"):
            url = token
        # --location, --compressed, --insecure and other flags change nothing we replay.
    if not url:
        raise CurlError("no URL in the command")
    body: dict[str, Any] = {}
    if data:
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise CurlError(f"the request body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise CurlError("the request body must be a JSON object")
    return ExportAuth(url=url, headers=headers, cookies=cookies, body=body)


def _cookies(value: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(value)
    except Exception:
        return {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in value.split(";")) if k.strip()}
    return {k: m.value for k, m in jar.items()}


def problems(auth: ExportAuth) -> list[str]:
    """What a copied curl for the export endpoint lacks (an empty list when it looks usable)."""
    found = []
    if not ({"session", "sl_session"} & set(auth.cookies)):
        found.append("no session cookie (session / sl_session): copy the request while logged in")
    if "csrf-token" not in auth.headers and "x-csrf-token" not in auth.headers:
        found.append("no csrf-token header")
    if auth.body and RANGE_KEY not in auth.body:
        found.append(f"the body has no {RANGE_KEY} (copy the export request itself)")
    return found


def export_body(auth: ExportAuth, start: str, end: str, filters: dict[str, Any]) -> dict[str, Any]:
    """The copied body with our range and filters ("keyword", "searchTabEnumCode")."""
    body = {"keyword": "", "searchTabEnumCode": 0, **auth.body, **filters}
    body[RANGE_KEY] = [start, end]
    return body
