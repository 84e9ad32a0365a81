"""Encryption at rest for tokens: Fernet (AES-128-CBC + HMAC) from `cryptography`.

TOKEN_ENCRYPTION_KEY holds one or more Fernet keys, comma-separated, newest first: new
ciphertext uses the first, any of them decrypts (MultiFernet), so keys can be rotated. Unset,
a key is generated once into `var_dir/token-encryption.key` (mode 0600) so the first run
needs no setup; a platform with an ephemeral disk must set the variable.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.config import Settings
from bot.masking import register_secrets
from bot.private import private_dir

KEY_FILE = "token-encryption.key"


class SecretBoxError(RuntimeError):
    """Ciphertext that no configured key opens (wrong or rotated-away TOKEN_ENCRYPTION_KEY)."""


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one key is required")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise SecretBoxError(
                "stored token cannot be decrypted with TOKEN_ENCRYPTION_KEY (was the key changed?)"
            ) from exc


def encryption_keys(settings: Settings) -> list[str]:
    configured = settings.token_encryption_key.get_secret_value()
    if configured:
        keys = [k.strip() for k in configured.split(",") if k.strip()]
    else:
        keys = [_key_from_file(settings.var_dir / KEY_FILE)]
    register_secrets(keys)
    return keys


def _key_from_file(path: Path) -> str:
    private_dir(path.parent)
    key = Fernet.generate_key().decode()
    # O_EXCL: when several processes start at once, exactly one writes the key; the others read it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _read_key(path: Path) -> str:
    for _ in range(100):  # the creating process may not have written it yet
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.01)
    raise SecretBoxError(f"{path} is empty: delete it or set TOKEN_ENCRYPTION_KEY")


def build_secret_box(settings: Settings) -> SecretBox:
    return SecretBox(encryption_keys(settings))
