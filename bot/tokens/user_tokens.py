"""User access tokens: the only code that reads or writes `oauth_tokens`.

`get_valid_user_token(subject)` is the one way to obtain a user token. When the token is
close to expiry it is refreshed — exactly once across all processes: refresh tokens are
single-use and rotate, so two concurrent refreshes would lock the account out. The refresh
takes a Redis lock (with a TTL, so a killed holder frees it), re-reads the row, refreshes
only if still needed, and writes the new pair in one transaction that is compare-and-swap on
`generation` and read back before it counts. Transient failures are retried with backoff;
a revoked or expired grant becomes `reauth_required` and raises an alert.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.masking import register_secrets
from bot.models import OAuthToken, TokenRefresh, utcnow
from bot.tokens.oauth import (
    ErrorClass,
    OAuthError,
    TokenPair,
    needs_refresh,
    parse_token_response,
    refresh_grant_body,
    seconds_left,
)
from bot.tokens.secretbox import SecretBox

if TYPE_CHECKING:  # Redis, tenacity and alerts are imported where a refresh uses them:
    from redis import Redis  # reading grants (`auth status`) needs none of them

log = logging.getLogger(__name__)

PostToken = Callable[[dict[str, str]], tuple[int, Any]]
LOGIN_HINT = "run `feishu-bridge auth login`"


class TokenError(RuntimeError):
    """No user token can be had right now."""


class NotAuthorized(TokenError):
    pass


class ReauthRequired(TokenError):
    """The grant is gone (refresh token expired, revoked or missing): the user must log in."""


class TokenUnavailable(TokenError):
    """Transient: Feishu or the lock did not answer in time; a retry later can succeed."""


def list_grants(engine: Engine) -> list[OAuthToken]:
    """Every stored grant, still sealed: for status pages, which need neither Redis nor the SDK."""
    with Session(engine) as session:
        return list(session.scalars(select(OAuthToken).order_by(OAuthToken.id)))


def refresh_history(engine: Engine, subject: str, limit: int = 10) -> list[TokenRefresh]:
    """A user's refresh attempts and grant changes, newest first."""
    with Session(engine) as session:
        return list(session.scalars(
            select(TokenRefresh).where(TokenRefresh.subject == subject)
            .order_by(TokenRefresh.id.desc()).limit(limit)
        ))


@dataclass(frozen=True)
class UserInfo:
    subject: str  # the user's open_id
    name: str


class UserTokens:
    def __init__(self, engine: Engine, redis: Redis, box: SecretBox, settings: Settings,
                 post_token: PostToken, *, now: Callable[[], datetime] = utcnow,
                 retry_wait: float = 0.5) -> None:
        self._engine = engine
        self._redis = redis
        self._box = box
        self._settings = settings
        self._post_token = post_token
        self._now = now
        self._retry_wait = retry_wait

    # -- the one way to a token ------------------------------------------------------

    def get_valid_user_token(self, subject: str | None = None, *, rejected: str | None = None,
                             cause: str = "on_demand", margin_seconds: float | None = None) -> str:
        """A user access token valid for at least the margin. `rejected`: a token the server
        just refused, which must not be handed out again."""
        margin = self._settings.token_refresh_margin_seconds if margin_seconds is None else margin_seconds
        subject = self.resolve_subject(subject)
        usable = self._usable(self._load(subject), rejected, margin)
        if usable:
            return usable
        return self._refresh_locked(subject, rejected=rejected, cause=cause, margin=margin, force=False)

    def refresh(self, subject: str | None = None, *, cause: str = "manual") -> str:
        """Refresh now, whatever the expiry (CLI `auth refresh`)."""
        subject = self.resolve_subject(subject)
        return self._refresh_locked(subject, rejected=None, cause=cause, margin=0, force=True)

    def resolve_subject(self, subject: str | None) -> str:
        if subject:
            return subject
        with Session(self._engine) as session:
            subjects = list(session.scalars(select(OAuthToken.subject).order_by(OAuthToken.id)))
        if len(subjects) == 1:
            return subjects[0]
        if not subjects:
            raise NotAuthorized(f"no Feishu user has authorised the bot yet; {LOGIN_HINT}")
        raise NotAuthorized(f"several users have authorised the bot ({', '.join(subjects)}); pick one")

    # -- grants --------------------------------------------------------------------------

    def store_grant(self, user: UserInfo, pair: TokenPair) -> None:
        """A new authorisation replaces whatever was stored for this user."""
        now = self._now()
        register_secrets([pair.access_token, pair.refresh_token])
        values = dict(
            display_name=user.name, access_token=self._box.seal(pair.access_token),
            refresh_token=self._box.seal(pair.refresh_token) if pair.refresh_token else None,
            expires_at=pair.expires_at, refresh_expires_at=pair.refresh_expires_at, scopes=pair.scopes,
            last_refresh=None, status="active", last_error=None, created_at=now, updated_at=now,
        )
        with Session(self._engine) as session, session.begin():
            row = session.scalar(select(OAuthToken).where(OAuthToken.subject == user.subject)
                                 .with_for_update())
            if row is None:
                session.add(OAuthToken(subject=user.subject, generation=1, **values))
            else:
                for key, value in values.items():
                    setattr(row, key, value)
                row.generation += 1
            session.add(self._history(user.subject, "login", "authorized", pair=pair, now=now))
        if not pair.refresh_token:
            log.warning("grant has no refresh token: request the offline_access scope",
                        extra={"subject": user.subject})

    def logout(self, subject: str | None = None) -> str:
        subject = self.resolve_subject(subject)
        with Session(self._engine) as session, session.begin():
            session.execute(delete(OAuthToken).where(OAuthToken.subject == subject))
            session.add(TokenRefresh(subject=subject, at=self._now(), cause="manual", outcome="logged_out"))
        return subject

    def grants(self) -> list[OAuthToken]:
        return list_grants(self._engine)

    def history(self, subject: str, limit: int = 10) -> list[TokenRefresh]:
        return refresh_history(self._engine, subject, limit)

    # -- refresh ------------------------------------------------------------------------

    def _usable(self, row: OAuthToken | None, rejected: str | None, margin: float) -> str | None:
        if row is None:
            raise NotAuthorized(f"no Feishu authorisation stored; {LOGIN_HINT}")
        if row.status == "reauth_required":
            raise ReauthRequired(f"the Feishu authorisation of {row.display_name or row.subject} has "
                                 f"expired or was revoked ({row.last_error}); {LOGIN_HINT}")
        token = self._box.open(row.access_token)
        register_secrets([token])
        if token == rejected or needs_refresh(row.expires_at, self._now(), margin):
            return None
        return token

    def _refresh_locked(self, subject: str, *, rejected: str | None, cause: str, margin: float,
                        force: bool) -> str:
        from redis.exceptions import LockError

        ttl = self._settings.token_lock_ttl_seconds
        lock = self._redis.lock(f"fb:lock:user-token:{subject}", timeout=ttl,
                                blocking_timeout=ttl + 5, thread_local=False)
        if not lock.acquire():
            raise TokenUnavailable(f"another process has been refreshing the token of {subject} "
                                   f"for over {ttl + 5} s")
        try:
            row = self._load(subject)  # re-read: whoever held the lock may have refreshed already
            if not force:
                usable = self._usable(row, rejected, margin)
                if usable:
                    return usable
            else:
                self._usable(row, None, margin)  # raises for a missing or re-auth-required grant
            assert row is not None
            return self._refresh(row, cause)
        finally:
            try:
                lock.release()
            except LockError:
                log.warning("token refresh outlived its lock (TOKEN_LOCK_TTL_SECONDS too short?)",
                            extra={"subject": subject})

    def _refresh(self, row: OAuthToken, cause: str) -> str:
        pending = self._pending_pair(row)
        if pending is not None:
            # A refresh Feishu answered but the database did not take (e.g. it was down): its
            # refresh token is the only valid one now, so store that pair instead of refreshing.
            self._store_refreshed(row, pending, "recovered")
            return pending.access_token
        if not row.refresh_token:
            self._mark_reauth(row, cause, None, "no refresh token (the grant lacks offline_access)")
            raise ReauthRequired(f"the stored grant has no refresh token; add the offline_access scope "
                                 f"and {LOGIN_HINT}")
        body = refresh_grant_body(self._settings.feishu_app_id,
                                  self._settings.feishu_app_secret.get_secret_value(),
                                  self._box.open(row.refresh_token))
        try:
            pair = self._exchange(body)
        except OAuthError as exc:
            return self._refresh_failed(row, cause, exc)
        self._keep_pending(row, pair)
        self._store_refreshed(row, pair, cause)
        return pair.access_token

    def _pending_key(self, row: OAuthToken) -> str:
        return f"fb:token-pending:{row.subject}:{row.generation}"

    def _keep_pending(self, row: OAuthToken, pair: TokenPair) -> None:
        """Park the new pair (sealed) in Redis until the database has it: the old refresh token is
        already spent, so losing this pair would lose the grant."""
        sealed = self._box.seal(json.dumps({
            "access_token": pair.access_token, "refresh_token": pair.refresh_token,
            "expires_at": pair.expires_at.isoformat(),
            "refresh_expires_at": pair.refresh_expires_at.isoformat() if pair.refresh_expires_at else None,
            "scopes": pair.scopes,
        }))
        self._redis.set(self._pending_key(row), sealed, ex=7 * 24 * 3600)

    def _pending_pair(self, row: OAuthToken) -> TokenPair | None:
        sealed = self._redis.get(self._pending_key(row))
        if not sealed:
            return None
        doc = json.loads(self._box.open(sealed.decode()))
        return TokenPair(
            access_token=doc["access_token"], refresh_token=doc["refresh_token"],
            expires_at=datetime.fromisoformat(doc["expires_at"]),
            refresh_expires_at=(datetime.fromisoformat(doc["refresh_expires_at"])
                                if doc["refresh_expires_at"] else None),
            scopes=doc["scopes"],
        )

    def _exchange(self, body: dict[str, str]) -> TokenPair:
        """POST the grant; transient failures retried with backoff, 3 attempts in all."""
        from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        def attempt() -> TokenPair:
            try:
                status, payload = self._post_token(body)
            except Exception as exc:  # network: requests/socket errors from the SDK's transport
                raise OAuthError(ErrorClass.TRANSIENT, None, f"{type(exc).__name__}: {exc}") from exc
            return parse_token_response(status, payload, self._now())

        retrying = Retrying(
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=self._retry_wait, max=8 * self._retry_wait),
            retry=retry_if_exception(lambda e: isinstance(e, OAuthError) and e.kind is ErrorClass.TRANSIENT),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except RetryError as exc:  # pragma: no cover - reraise=True hands back the OAuthError
            raise exc.last_attempt.exception() from exc

    def _store_refreshed(self, row: OAuthToken, pair: TokenPair, cause: str) -> None:
        register_secrets([pair.access_token, pair.refresh_token])
        now = self._now()
        with Session(self._engine) as session, session.begin():
            result = session.execute(
                update(OAuthToken)
                .where(OAuthToken.subject == row.subject, OAuthToken.generation == row.generation)
                .values(
                    access_token=self._box.seal(pair.access_token),
                    refresh_token=self._box.seal(pair.refresh_token) if pair.refresh_token else None,
                    expires_at=pair.expires_at,
                    refresh_expires_at=pair.refresh_expires_at or row.refresh_expires_at,
                    scopes=pair.scopes or row.scopes, last_refresh=now, status="active",
                    last_error=None, generation=OAuthToken.generation + 1, updated_at=now,
                )
            )
            if result.rowcount != 1:
                raise TokenUnavailable("the stored grant changed during the refresh; retry")
            session.add(self._history(row.subject, cause, "refreshed", pair=pair, now=now))
        stored = self._load(row.subject)  # verify: what is stored is what Feishu issued
        if stored is None or self._box.open(stored.access_token) != pair.access_token:
            raise TokenUnavailable("the refreshed token did not read back from the database")
        self._redis.delete(self._pending_key(row))
        log.info("user token refreshed", extra={
            "subject": row.subject, "cause": cause,
            "hours_left": round((pair.expires_at - now).total_seconds() / 3600, 2)})

    def _refresh_failed(self, row: OAuthToken, cause: str, exc: OAuthError) -> str:
        if exc.kind is ErrorClass.GRANT_INVALID:
            fresh = self._load(row.subject)
            if fresh is not None and fresh.generation != row.generation and fresh.status == "active":
                return self._box.open(fresh.access_token)  # someone else rotated it meanwhile
            self._mark_reauth(row, cause, exc.code, exc.message)
            raise ReauthRequired(f"Feishu refused to refresh the token of {row.display_name or row.subject}"
                                 f": {exc.message}; {LOGIN_HINT}") from exc
        outcome = "transient_error" if exc.kind is ErrorClass.TRANSIENT else "error"
        now = self._now()
        with Session(self._engine) as session, session.begin():
            session.execute(update(OAuthToken).where(OAuthToken.subject == row.subject)
                            .values(last_error=str(exc), updated_at=now))
            session.add(self._history(row.subject, cause, outcome, code=exc.code, error=str(exc), row=row,
                                      now=now))
        log.warning("user token refresh failed", extra={"subject": row.subject, "error": str(exc)})
        if row.expires_at > now:
            return self._box.open(row.access_token)  # still valid for a while: keep working
        raise TokenUnavailable(f"could not refresh the Feishu token of {row.subject}: {exc}") from exc

    def _mark_reauth(self, row: OAuthToken, cause: str, code: int | None, message: str) -> None:
        from bot import alerts

        now = self._now()
        with Session(self._engine) as session, session.begin():
            session.execute(update(OAuthToken).where(OAuthToken.subject == row.subject)
                            .values(status="reauth_required", last_error=message, updated_at=now))
            session.add(self._history(row.subject, cause, "permanent_error", code=code, error=message,
                                      row=row, now=now))
        alerts.raise_alert(
            self._engine,
            key=f"token:{row.subject}:reauth_required:{int(row.created_at.timestamp())}",
            kind="token_reauth_required",
            message=(f"⚠️ 飞书用户授权已失效：{row.display_name or row.subject}（{message}）。"
                     f"请运行 `feishu-bridge auth login` 重新授权。"),
        )
        log.error("user grant needs re-authorisation", extra={"subject": row.subject, "error": message})

    # -- rows -----------------------------------------------------------------------------

    def _load(self, subject: str) -> OAuthToken | None:
        with Session(self._engine) as session:
            return session.scalar(select(OAuthToken).where(OAuthToken.subject == subject))

    @staticmethod
    def _history(subject: str, cause: str, outcome: str, *, now: datetime, pair: TokenPair | None = None,
                 row: OAuthToken | None = None, code: int | None = None, error: str | None = None
                 ) -> TokenRefresh:
        from bot.metrics import TOKEN_REFRESHES  # prometheus-client: not for reading grants

        TOKEN_REFRESHES.labels(outcome).inc()
        expires_at = pair.expires_at if pair else (row.expires_at if row else None)
        refresh_at = (pair.refresh_expires_at if pair else None) or (row.refresh_expires_at if row else None)
        return TokenRefresh(
            subject=subject, at=now, cause=cause, outcome=outcome, error_code=code,
            error=error[:2000] if error else None,
            access_remaining_seconds=seconds_left(expires_at, now),
            refresh_remaining_seconds=seconds_left(refresh_at, now),
        )
