"""Chat command parsing: pure, so every wording is unit-testable without Feishu."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_MENTION = re.compile(r"@_user_\d+|@_all")


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...]


def text_of_message(content: str | None) -> str:
    """The plain text of a `text` message's JSON content, without @mention placeholders."""
    if not content:
        return ""
    try:
        doc = json.loads(content)
    except ValueError:
        return ""
    text = doc.get("text") if isinstance(doc, dict) else None
    if not isinstance(text, str):
        return ""
    return _MENTION.sub(" ", text).strip()


def parse(text: str) -> Command | None:
    """`/ping` → Command("ping", ()). Non-command chatter → None."""
    text = text.strip()
    if not text.startswith("/"):
        return None
    parts = text[1:].split()
    if not parts:
        return None
    return Command(parts[0].lower(), tuple(parts[1:]))
