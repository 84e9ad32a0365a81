"""Coze API keys at rest: sealed with the same Fernet box as tokens; shown only masked."""

from __future__ import annotations

from bot.masking import mask, register_secrets
from bot.tokens.secretbox import SecretBox


def seal_key(box: SecretBox, key: str | None) -> str | None:
    if not key:
        return None
    register_secrets([key])
    return box.seal(key)


def open_key(box: SecretBox, sealed: str | None) -> str:
    if not sealed:
        return ""
    key = box.open(sealed)
    register_secrets([key])
    return key


def masked_key(box: SecretBox, sealed: str | None) -> str | None:
    return mask(open_key(box, sealed)) if sealed else None
