"""Stored OAuth grants, any provider: the only code that reads or writes `oauth_tokens`.

A `TokenStore` serves one provider's grants (`feishu` for Feishu user tokens — see
user_tokens.py —, or an external provider — provider_tokens.py). `get_valid(subject)` hands
out an access token valid for at least the margin; when it is close to expiry it is refreshed,
exactly once across all processes: refresh tokens are single-use and rotate, so two concurrent
refreshes would lock the account out. The refresh takes a Redis lock (with a TTL, so a killed
holder frees it), re-reads the row, refreshes only if still needed, parks the new pair (sealed)
in Redis until the database has it, and writes it in one transaction that is compare-and-swap on
`generation` and read back before it counts. Transient failures are retried with backoff; a
revoked or expired grant becomes `reauth_required` and raises one alert naming the fix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.locks import Keeper, kept_alive
from bot.masking import register_secrets
from bot.models import OAuthToken, TokenRefresh, utcnow
from bot.tokens.oauth import ErrorClass, OAuthError, TokenPair, needs_refresh, seconds_left
from bot.tokens.providers import FEISHU
from bot.tokens.secretbox import SecretBox

if TYPE_CHECKING:  # Redis, tenacity and alerts are imported where a refresh uses them:
    from redis import Redis  # reading grants (`auth status`) needs none of them

    from bot.tokens.kinds import GrantKind

log = logging.getLogger(__name__)

MAX_REFRESH_SECONDS = 600  # a refresh (its attempts and backoff) holds the lock at most this long

Exchange = Callable[[str], TokenPair]  # refresh token → new pair; one attempt, raises OAuthError


class TokenError(RuntimeError):
    """No token can be had right now."""


class NotAuthorized(TokenError):
    pass


class ReauthRequired(TokenError):
    """The grant is gone (refresh token expired, revoked or missing): the user must log in."""


class TokenUnavailable(TokenError):
    """Transient: the provider or the lock did not answer in time; a retry later can succeed."""


def list_grants(engine: Engine, provider: str | None = None) -> list[OAuthToken]:
    """Stored grants (every provider's, or one's), still sealed: for status pages, which need
    neither Redis nor the SDK."""
    query = select(OAuthToken).order_by(OAuthToken.provider != FEISHU, OAuthToken.provider, OAuthToken.id)
    if provider is not None:
        query = query.where(OAuthToken.provider == provider)
    with Session(engine) as session:
        return list(session.scalars(query))


def refresh_history(engine: Engine, subject: str, limit: int = 10, provider: str = FEISHU
                    ) -> list[TokenRefresh]:
    """A grant's refresh attempts and changes, newest first."""
    with Session(engine) as session:
        return list(session.scalars(
            select(TokenRefresh).where(TokenRefresh.provider == provider, TokenRefresh.subject == subject)
            .order_by(TokenRefresh.id.desc()).limit(limit)
        ))


class TokenStore:
    def __init__(self, engine: Engine, redis: Redis, box: SecretBox, settings: Settings, kind: GrantKind,
                 exchange: Exchange, *, now: Callable[[], datetime] = utcnow,
                 retry_wait: float = 0.5) -> None:
        self._engine = engine
        self._redis = redis
        self._box = box
        self._settings = settings
        self.kind = kind
        self._exchange_once = exchange
        self._now = now
        self._retry_wait = retry_wait

    @property
    def provider(self) -> str:
        return self.kind.provider

    # -- the one way to a token ------------------------------------------------------

    def get_valid(self, subject: str | None = None, *, rejected: str | None = None, cause: str = "on_demand",
                  margin_seconds: float | None = None) -> str:
        """An access token valid for at least the margin. `rejected`: a token the server just
        refused, which must not be handed out again."""
        margin = self._settings.token_refresh_margin_seconds if margin_seconds is None else margin_seconds
        subject = self.resolve_subject(subject)
        usable = self._usable(subject, self._load(subject), rejected, margin)
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
            mine = select(OAuthToken.subject).where(OAuthToken.provider == self.provider)
            subjects = list(session.scalars(mine.order_by(OAuthToken.id)))
        if len(subjects) == 1:
            return subjects[0]
        if not subjects:
            raise NotAuthorized(f"{self.kind.nobody()}; {self.kind.hint(None)}")
        raise NotAuthorized(self.kind.several(subjects))

    # -- grants --------------------------------------------------------------------------

    def store_pair(self, subject: str, display_name: str, pair: TokenPair) -> None:
        """A new authorisation replaces whatever was stored for this subject."""
        now = self._now()
        register_secrets([pair.access_token, pair.refresh_token])
        values = dict(
            display_name=display_name, access_token=self._box.seal(pair.access_token),
            refresh_token=self._box.seal(pair.refresh_token) if pair.refresh_token else None,
            expires_at=pair.expires_at, refresh_expires_at=pair.refresh_expires_at, scopes=pair.scopes,
            last_refresh=None, status="active", last_error=None, created_at=now, updated_at=now,
        )
        with Session(self._engine) as session, session.begin():
            row = session.scalar(self._where(select(OAuthToken), subject).with_for_update())
            if row is None:
                session.add(OAuthToken(provider=self.provider, subject=subject, generation=1, **values))
            else:
                for key, value in values.items():
                    setattr(row, key, value)
                row.generation += 1
            session.add(self._history(subject, "login", "authorized", pair=pair, now=now))

    def logout(self, subject: str | None = None) -> str:
        subject = self.resolve_subject(subject)
        with Session(self._engine) as session, session.begin():
            session.execute(self._where(delete(OAuthToken), subject))
            session.add(TokenRefresh(provider=self.provider, subject=subject, at=self._now(), cause="manual",
                                     outcome="logged_out"))
        return subject

    def grants(self) -> list[OAuthToken]:
        return list_grants(self._engine, self.provider)

    def grant(self, subject: str) -> OAuthToken | None:
        return self._load(subject)

    def history(self, subject: str, limit: int = 10) -> list[TokenRefresh]:
        return refresh_history(self._engine, subject, limit, self.provider)

    # -- refresh ------------------------------------------------------------------------

    def _usable(self, subject: str, row: OAuthToken | None, rejected: str | None,
                margin: float) -> str | None:
        if row is None:
            raise NotAuthorized(f"no {self.kind.label} authorisation stored; {self.kind.hint(subject)}")
        if row.status == "reauth_required":
            raise ReauthRequired(f"the {self.kind.label} authorisation of {self.kind.who(row)} has expired "
                                 f"or was revoked ({row.last_error}); {self.kind.hint(row.subject)}")
        token = self._box.open(row.access_token)
        register_secrets([token])
        if not token or token == rejected or needs_refresh(row.expires_at, self._now(), margin):
            return None
        return token

    def _refresh_locked(self, subject: str, *, rejected: str | None, cause: str, margin: float,
                        force: bool) -> str:
        from redis.exceptions import LockError

        ttl = self._settings.token_lock_ttl_seconds
        lock = self._redis.lock(self.kind.lock_key(subject), timeout=ttl,
                                blocking_timeout=ttl + 5, thread_local=False)
        if not lock.acquire():
            raise TokenUnavailable(f"another process has been refreshing the token of {subject} "
                                   f"for over {ttl + 5} s")
        try:
            row = self._load(subject)  # re-read: whoever held the lock may have refreshed already
            if not force:
                usable = self._usable(subject, row, rejected, margin)
                if usable:
                    return usable
            else:
                self._usable(subject, row, None, margin)  # raises for a missing or re-auth-required grant
            assert row is not None
            # renewed in the background: one attempt can outlast the TTL
            with kept_alive(lock, ttl, max_hold=MAX_REFRESH_SECONDS) as keeper:
                return self._refresh(row, cause, keep_lock=lambda: self._keep_lock(keeper, subject))
        finally:
            try:
                lock.release()
            except LockError:
                log.warning("token refresh outlived its lock (TOKEN_LOCK_TTL_SECONDS too short?)",
                            extra={"provider": self.provider, "subject": subject})

    def _keep_lock(self, keeper: Keeper, subject: str) -> None:
        """Make sure the refresh lock is still ours before each exchange attempt: a refresh token
        must never be spent by two holders at once."""
        from redis.exceptions import LockError

        try:
            keeper.renew()
        except LockError as exc:
            raise TokenUnavailable(f"the refresh lock of {subject} expired before the refresh token was "
                                   "spent (TOKEN_LOCK_TTL_SECONDS too short?); not spending it") from exc

    def _refresh(self, row: OAuthToken, cause: str, keep_lock: Callable[[], None] = lambda: None) -> str:
        pending = self._pending_pair(row)
        if pending is not None:
            # A refresh the provider answered but the database did not take (e.g. it was down): its
            # refresh token is the only valid one now, so store that pair instead of refreshing.
            self._store_refreshed(row, pending, "recovered")
            return pending.access_token
        if not row.refresh_token:
            self._mark_reauth(row, cause, None, self.kind.no_refresh_token)
            raise ReauthRequired(f"the stored grant has no refresh token; {self.kind.no_refresh_fix}"
                                 f"{self.kind.hint(row.subject)}")
        try:
            pair = self._exchange(self._box.open(row.refresh_token), keep_lock)
        except OAuthError as exc:
            return self._refresh_failed(row, cause, exc)
        self._keep_pending(row, pair)
        self._store_refreshed(row, pair, cause)
        return pair.access_token

    def _keep_pending(self, row: OAuthToken, pair: TokenPair) -> None:
        """Park the new pair (sealed) in Redis until the database has it: the old refresh token is
        already spent, so losing this pair would lose the grant."""
        sealed = self._box.seal(json.dumps({
            "access_token": pair.access_token, "refresh_token": pair.refresh_token,
            "expires_at": pair.expires_at.isoformat(),
            "refresh_expires_at": pair.refresh_expires_at.isoformat() if pair.refresh_expires_at else None,
            "scopes": pair.scopes,
        }))
        self._redis.set(self.kind.pending_key(row.subject, row.generation), sealed, ex=7 * 24 * 3600)

    def _pending_pair(self, row: OAuthToken) -> TokenPair | None:
        sealed = self._redis.get(self.kind.pending_key(row.subject, row.generation))
        if not sealed:
            return None
        doc = json.loads(self._box.open(sealed.decode()))
        register_secrets([doc["access_token"], doc["refresh_token"]])
        return TokenPair(
            access_token=doc["access_token"], refresh_token=doc["refresh_token"],
            expires_at=datetime.fromisoformat(doc["expires_at"]),
            refresh_expires_at=(datetime.fromisoformat(doc["refresh_expires_at"])
                                if doc["refresh_expires_at"] else None),
            scopes=doc["scopes"],
        )

    def _exchange(self, refresh_token: str, keep_lock: Callable[[], None]) -> TokenPair:
        """Spend the refresh token; transient failures retried with backoff, 3 attempts in all,
        each under a renewed lock."""
        from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        def attempt() -> TokenPair:
            keep_lock()
            try:
                return self._exchange_once(refresh_token)
            except OAuthError:
                raise
            except Exception as exc:  # network: requests/socket errors from the transport
                raise OAuthError(ErrorClass.TRANSIENT, None, f"{type(exc).__name__}: {exc}") from exc

        retrying = Retrying(
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=self._retry_wait, max=8 * self._retry_wait),
            retry=retry_if_exception(lambda e: isinstance(e, OAuthError) and e.kind is ErrorClass.TRANSIENT),
            reraise=True,
        )
        try:
            pair = retrying(attempt)
        except RetryError as exc:  # pragma: no cover - reraise=True hands back the OAuthError
            raise exc.last_attempt.exception() from exc
        register_secrets([pair.access_token, pair.refresh_token])
        return pair

    def _store_refreshed(self, row: OAuthToken, pair: TokenPair, cause: str) -> None:
        register_secrets([pair.access_token, pair.refresh_token])
        now = self._now()
        with Session(self._engine) as session, session.begin():
            result = session.execute(
                self._where(update(OAuthToken), row.subject).where(OAuthToken.generation == row.generation)
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
        stored = self._load(row.subject)  # verify: what is stored is what the provider issued
        if stored is None or self._box.open(stored.access_token) != pair.access_token:
            raise TokenUnavailable("the refreshed token did not read back from the database")
        self._redis.delete(self.kind.pending_key(row.subject, row.generation))
        log.info(f"{self.kind.noun} token refreshed", extra={
            "provider": self.provider, "subject": row.subject, "cause": cause,
            "hours_left": round((pair.expires_at - now).total_seconds() / 3600, 2)})

    def _refresh_failed(self, row: OAuthToken, cause: str, exc: OAuthError) -> str:
        if exc.kind is ErrorClass.GRANT_INVALID:
            fresh = self._load(row.subject)
            if fresh is not None and fresh.generation != row.generation and fresh.status == "active":
                return self._box.open(fresh.access_token)  # someone else rotated it meanwhile
            self._mark_reauth(row, cause, exc.code, exc.message)
            raise ReauthRequired(f"{self.kind.label} refused to refresh the token of {self.kind.who(row)}: "
                                 f"{exc.message}; {self.kind.hint(row.subject)}") from exc
        outcome = "transient_error" if exc.kind is ErrorClass.TRANSIENT else "error"
        now = self._now()
        with Session(self._engine) as session, session.begin():
            session.execute(self._where(update(OAuthToken), row.subject)
                            .values(last_error=str(exc), updated_at=now))
            session.add(self._history(row.subject, cause, outcome, code=exc.code, error=str(exc), row=row,
                                      now=now))
        log.warning(f"{self.kind.noun} token refresh failed",
                    extra={"provider": self.provider, "subject": row.subject, "error": str(exc)})
        token = self._box.open(row.access_token)
        if token and row.expires_at > now:
            return token  # still valid for a while: keep working
        fix = self.kind.other_fix if exc.kind is ErrorClass.OTHER else ""
        raise TokenUnavailable(f"could not refresh the {self.kind.label} token of {row.subject}: {exc}{fix}"
                               ) from exc

    def _mark_reauth(self, row: OAuthToken, cause: str, code: int | None, message: str) -> None:
        from bot import alerts

        now = self._now()
        with Session(self._engine) as session, session.begin():
            session.execute(self._where(update(OAuthToken), row.subject)
                            .values(status="reauth_required", last_error=message, updated_at=now))
            session.add(self._history(row.subject, cause, "permanent_error", code=code, error=message,
                                      row=row, now=now))
        if cause != "login":  # whoever is logging in sees the error; everyone else needs the alert
            key, text = self.kind.reauth_alert(row, message)
            alerts.raise_alert(self._engine, key=key, kind="token_reauth_required", message=text)
        log.error(f"{self.kind.noun} grant needs re-authorisation",
                  extra={"provider": self.provider, "subject": row.subject, "error": message})

    # -- rows -----------------------------------------------------------------------------

    def _where(self, statement, subject: str):
        return statement.where(OAuthToken.provider == self.provider, OAuthToken.subject == subject)

    def _load(self, subject: str) -> OAuthToken | None:
        with Session(self._engine) as session:
            return session.scalar(self._where(select(OAuthToken), subject))

    def _history(self, subject: str, cause: str, outcome: str, *, now: datetime,
                 pair: TokenPair | None = None, row: OAuthToken | None = None, code: int | None = None,
                 error: str | None = None) -> TokenRefresh:
        from bot.metrics import TOKEN_REFRESHES  # prometheus-client: not for reading grants

        TOKEN_REFRESHES.labels(outcome).inc()
        expires_at = pair.expires_at if pair else (row.expires_at if row else None)
        refresh_at = (pair.refresh_expires_at if pair else None) or (row.refresh_expires_at if row else None)
        return TokenRefresh(
            provider=self.provider, subject=subject, at=now, cause=cause, outcome=outcome, error_code=code,
            error=error[:2000] if error else None,
            access_remaining_seconds=seconds_left(expires_at, now),
            refresh_remaining_seconds=seconds_left(refresh_at, now),
        )
