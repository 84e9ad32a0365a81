"""File names built from things other people chose: table names, Feishu message ids.

A bitable named `人力/盘点` once became the path `…/quality-人力/盘点.xlsx` (a directory that
does not exist), and an export file is named after the message id Feishu (or anyone able to
put a message in the export chat's history) gave us. Both go through here: a name is made
safe, an id is checked, before either reaches a path.
"""

from __future__ import annotations

import re
import unicodedata

MAX_NAME_LENGTH = 120  # characters; well inside every file system's 255-byte limit for CJK text
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
             *(f"LPT{i}" for i in range(1, 10))}
MESSAGE_ID = re.compile(r"om_[A-Za-z0-9_-]{1,64}")


def safe_filename(name: str, *, fallback: str = "file") -> str:
    """`name` as one path component: separators, control and Windows-reserved characters
    become `_`, leading dots and edge spaces go, length is capped; never empty, never `..`."""
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).strip().lstrip(".").strip()
    cleaned = cleaned[:MAX_NAME_LENGTH].rstrip(" .")
    if not cleaned or cleaned.split(".")[0].upper() in _RESERVED:
        cleaned = f"{fallback}_{cleaned}" if cleaned else fallback
    return cleaned


def valid_message_id(message_id: str) -> bool:
    """A Feishu message id (`om_` and at most 64 id characters): safe as a file name."""
    return isinstance(message_id, str) and MESSAGE_ID.fullmatch(message_id) is not None
