"""Feishu user access tokens: the token store (bot/tokens/store.py) for provider `feishu`.

`get_valid_user_token(subject)` is the one way to obtain a user token. When the token is close
to expiry it is refreshed — exactly once across all processes (a Redis lock with a TTL, the row
re-read under it, compare-and-swap on `generation`, read back before it counts, the new pair
parked sealed in Redis until the database has it); transient failures are retried with backoff;
a revoked or expired grant becomes `reauth_required` and raises an alert. External providers'
grants go through the same store (bot/tokens/provider_tokens.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from bot.config import Settings
from bot.models import utcnow
from bot.tokens.kinds import FEISHU_KIND
from bot.tokens.oauth import TokenPair, parse_token_response, refresh_grant_body
from bot.tokens.secretbox import SecretBox
from bot.tokens.store import (
    NotAuthorized,
    ReauthRequired,
    TokenError,
    TokenStore,
    TokenUnavailable,
    list_grants,
    refresh_history,
)

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["LOGIN_HINT", "NotAuthorized", "ReauthRequired", "TokenError", "TokenUnavailable", "UserInfo",
           "UserTokens", "list_grants", "refresh_history"]

log = logging.getLogger(__name__)

PostToken = Callable[[dict[str, str]], tuple[int, Any]]
LOGIN_HINT = "run `feishu-bridge auth login`"


@dataclass(frozen=True)
class UserInfo:
    subject: str  # the user's open_id
    name: str


class UserTokens(TokenStore):
    def __init__(self, engine: Engine, redis: Redis, box: SecretBox, settings: Settings,
                 post_token: PostToken, *, now: Callable[[], datetime] = utcnow,
                 retry_wait: float = 0.5) -> None:
        super().__init__(engine, redis, box, settings, FEISHU_KIND, self._exchange_feishu, now=now,
                         retry_wait=retry_wait)
        self._post_token = post_token

    def get_valid_user_token(self, subject: str | None = None, *, rejected: str | None = None,
                             cause: str = "on_demand", margin_seconds: float | None = None) -> str:
        """A user access token valid for at least the margin. `rejected`: a token the server
        just refused, which must not be handed out again."""
        return self.get_valid(subject, rejected=rejected, cause=cause, margin_seconds=margin_seconds)

    def store_grant(self, user: UserInfo, pair: TokenPair) -> None:
        """A new authorisation replaces whatever was stored for this user."""
        self.store_pair(user.subject, user.name, pair)
        if not pair.refresh_token:
            log.warning("grant has no refresh token: request the offline_access scope",
                        extra={"subject": user.subject})

    def _exchange_feishu(self, refresh_token: str) -> TokenPair:
        body = refresh_grant_body(self._settings.feishu_app_id,
                                  self._settings.feishu_app_secret.get_secret_value(), refresh_token)
        status, payload = self._post_token(body)
        return parse_token_response(status, payload, self._now())
