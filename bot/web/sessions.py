"""Server-side dashboard sessions and failure throttles, both in Redis.

The cookie holds only a random session id: it reveals nothing about the admin token, it dies
at logout (the Redis key is deleted) and on its own after SESSION_LIFETIME_SECONDS. Redis keeps
a hash of the id, so a Redis dump yields no usable cookie. No database rows: sessions are
short-lived and Redis already holds the other short-lived secrets (OAuth states). A session
remembers which admin token opened it (as an HMAC keyed by its own id: no token oracle in Redis
either), so rotating ADMIN_TOKEN logs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from redis import Redis

from bot.masking import keyed_mark

COOKIE = "fb_session"
_SESSION = "fb:web-session:"
_FAILURES = "fb:web-failures:"


def _session_key(session_id: str) -> str:
    return _SESSION + hashlib.sha256(session_id.encode()).hexdigest()


def create(redis: Redis, admin_token: str, lifetime_seconds: int) -> str:
    """A new session id, valid for `lifetime_seconds` while ADMIN_TOKEN stays `admin_token`."""
    session_id = secrets.token_urlsafe(32)
    redis.set(_session_key(session_id), keyed_mark(session_id, admin_token), ex=max(1, lifetime_seconds))
    return session_id


def valid(redis: Redis, session_id: str | None, admin_token: str) -> bool:
    if not session_id or len(session_id) > 100 or not admin_token:
        return False
    stored = redis.get(_session_key(session_id))
    return stored is not None and hmac.compare_digest(stored, keyed_mark(session_id, admin_token).encode())


def revoke(redis: Redis, session_id: str | None) -> None:
    if session_id:
        redis.delete(_session_key(session_id))


# -- throttles ------------------------------------------------------------------------------------


def _failure_key(kind: str, client: str) -> str:
    return f"{_FAILURES}{kind}:{client}"


def retry_after(redis: Redis, kind: str, client: str, max_failures: int) -> int | None:
    """Seconds this client must wait before trying `kind` again, or None if it may try now."""
    key = _failure_key(kind, client)
    count = redis.get(key)
    if count is None or int(count) < max_failures:
        return None
    return max(1, int(redis.ttl(key)))


def record_failure(redis: Redis, kind: str, client: str, window_seconds: int) -> None:
    """Count a failure; the window starts at the first failure and is not extended by later ones,
    so a locked-out client is free again `window_seconds` after its first failure."""
    key = _failure_key(kind, client)
    with redis.pipeline() as pipe:
        pipe.set(key, 0, ex=max(1, window_seconds), nx=True)
        pipe.incr(key)
        pipe.execute()
