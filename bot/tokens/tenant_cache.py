"""lark-oapi's token cache, backed by Redis, so every process shares one tenant token.

The SDK caches its tenant token in a process-wide `ICache` (`get(key)`, `set(key, value,
expire)` with `expire` an absolute Unix time). The default is process-local, so each web
worker and every RQ work horse fetched its own. Values are sealed with the token key: a
Redis dump holds no usable token.
"""

from __future__ import annotations

import logging

from lark_oapi.core.cache import ICache
from redis import Redis
from redis.exceptions import RedisError

from bot.masking import register_secrets
from bot.tokens.secretbox import SecretBox, SecretBoxError

log = logging.getLogger(__name__)

PREFIX = "fb:lark-cache:"


def tenant_token_key(app_id: str) -> str:
    """The SDK's own cache key for a self-built app's tenant token."""
    return f"self_tenant_token:{app_id}"


class RedisTokenCache(ICache):
    def __init__(self, redis: Redis, box: SecretBox) -> None:
        self._redis = redis
        self._box = box

    def get(self, key: str) -> str:
        try:
            sealed = self._redis.get(PREFIX + key)
        except RedisError as exc:
            log.warning("token cache unavailable; fetching a fresh token", extra={"error": str(exc)})
            return ""
        if not sealed:
            return ""
        try:
            value = self._box.open(sealed.decode())
        except SecretBoxError:
            return ""  # sealed with a key we no longer have: fetch a new one
        register_secrets([value])
        return value

    def set(self, key: str, value: str, expire: int) -> None:
        register_secrets([value])
        try:
            self._redis.set(PREFIX + key, self._box.seal(value), exat=int(expire))
        except RedisError as exc:
            log.warning("token cache unavailable; token not shared", extra={"error": str(exc)})

    def delete(self, key: str) -> None:
        self._redis.delete(PREFIX + key)
