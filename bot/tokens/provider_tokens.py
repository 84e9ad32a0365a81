"""External OAuth providers' tokens (an ad platform's API, …), through the one token store.

`services.provider_tokens.get_valid_token("ads")` is the one way to such a token: refreshed
ahead of expiry, exactly once across all processes, sealed at rest, read back after saving,
transient errors retried, history kept, `reauth_required` and one alert when the grant is gone
— the same store as Feishu user tokens (bot/tokens/store.py), keyed by provider. A caller whose
API answers "access token expired" (`access_rejected(provider, code)`, e.g. 40102) asks again
with `rejected=` the token it used.

Providers are declared in the modules listed in PIPELINE_MODULES (`PROVIDERS: list[Provider]`,
see bot/tokens/providers.py); their credentials, and endpoints overriding the declared ones,
come from the settings (OAUTH_PROVIDERS).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from bot.config import Settings
from bot.masking import register_secrets
from bot.models import utcnow
from bot.tokens.kinds import DEFAULT_SUBJECT, GrantKind
from bot.tokens.oauth import TokenPair
from bot.tokens.providers import FEISHU, Credentials, Provider, TokenRequest
from bot.tokens.secretbox import SecretBox
from bot.tokens.store import TokenError, TokenStore, list_grants, refresh_history

if TYPE_CHECKING:
    from redis import Redis

Post = Callable[[TokenRequest], tuple[int, Any]]  # one POST: (HTTP status, JSON body or None)
SUBJECT = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
TIMEOUT_SECONDS = 10.0  # one attempt well inside TOKEN_LOCK_TTL_SECONDS (each attempt renews the lock)


class ProviderNotConfigured(TokenError):
    """A provider that is not declared, or has no credentials: the message says which setting."""


def declared_providers(modules: str) -> dict[str, Provider]:
    """Every provider the listed modules declare (`PROVIDERS`); a module that does not exist is
    skipped (the defaults name modules an installation may not have), one that fails is not."""
    found: dict[str, Provider] = {}
    for name in (m.strip() for m in modules.split(",") if m.strip()):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                continue
            raise
        declared = getattr(module, "PROVIDERS", None)
        if declared is None:
            continue
        if not isinstance(declared, list | tuple) or not all(isinstance(p, Provider) for p in declared):
            raise ProviderNotConfigured(f"{name}.PROVIDERS must be a list of bot.tokens.providers.Provider")
        for provider in declared:
            if found.get(provider.name, provider) is not provider:
                raise ProviderNotConfigured(f"provider {provider.name} is declared twice "
                                            f"(PIPELINE_MODULES={modules})")
            found[provider.name] = provider
    return found


def post_token_request(request: TokenRequest, timeout: float = TIMEOUT_SECONDS) -> tuple[int, Any]:
    """Send one token request; the tokens in the answer are registered as secrets at once."""
    import requests

    response = requests.post(request.url, json=request.json, data=request.form, headers=request.headers,
                             timeout=timeout, allow_redirects=False)
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for doc in (body, body.get("data")):
            if isinstance(doc, dict):
                register_secrets([str(doc.get(k) or "") for k in ("access_token", "refresh_token")])
    return response.status_code, body


class ProviderTokens:
    def __init__(self, engine: Engine, redis: Redis, box: SecretBox, settings: Settings, *,
                 post: Post | None = None, providers: Iterable[Provider] | None = None,
                 now: Callable[[], datetime] = utcnow, retry_wait: float = 0.5) -> None:
        self._engine = engine
        self._redis = redis
        self._box = box
        self._settings = settings
        self._post = post or post_token_request
        self._declared = {p.name: p for p in providers} if providers is not None else None
        self._now = now
        self._retry_wait = retry_wait
        self._stores: dict[str, TokenStore] = {}
        register_secrets([c.client_secret.get_secret_value() for c in settings.oauth_providers.values()])

    # -- the one way to a provider's token --------------------------------------------

    def get_valid_token(self, provider: str, subject: str | None = None, *, rejected: str | None = None,
                        cause: str = "on_demand", margin_seconds: float | None = None) -> str:
        """An access token of `provider` valid for at least the margin (TOKEN_REFRESH_MARGIN_SECONDS).
        `rejected`: a token the provider's API just refused as expired; it is not handed out again."""
        return self.store(provider).get_valid(subject, rejected=rejected, cause=cause,
                                              margin_seconds=margin_seconds)

    def refresh(self, provider: str, subject: str | None = None, *, cause: str = "manual") -> str:
        """Refresh now, whatever the expiry (CLI `auth refresh --provider`)."""
        return self.store(provider).refresh(subject, cause=cause)

    def store_grant(self, provider: str, subject: str = DEFAULT_SUBJECT, *, refresh_token: str,
                    access_token: str | None = None, expires_in: int | None = None,
                    refresh_expires_in: int | None = None, display_name: str = "") -> None:
        """Store a grant obtained outside the bridge (the provider's console, an earlier script);
        without an access token the first `get_valid_token` refreshes. Refresh tokens are
        single-use: the one stored here must not be used anywhere else any more."""
        store = self.store(provider)
        if not SUBJECT.match(subject or ""):
            raise ProviderNotConfigured(f"subject {subject!r}: use letters, digits and _ . @ - only "
                                        "(at most 128)")
        if not refresh_token.strip():
            raise ProviderNotConfigured("the refresh token is empty")
        register_secrets([refresh_token, access_token])
        now = self._now()
        pair = TokenPair(
            access_token=access_token or "", refresh_token=refresh_token.strip(),
            expires_at=now + timedelta(seconds=expires_in or self.provider(provider).access_seconds)
            if access_token else now,
            refresh_expires_at=now + timedelta(seconds=refresh_expires_in) if refresh_expires_in else None,
            scopes="",
        )
        store.store_pair(subject, display_name, pair)

    def logout(self, provider: str, subject: str | None = None) -> str:
        return self._reader(provider).logout(subject)

    def grants(self, provider: str | None = None) -> list[Any]:
        """Stored grants of every external provider (or one), still sealed; needs no declaration."""
        return [g for g in list_grants(self._engine, provider) if g.provider != FEISHU]

    def history(self, provider: str, subject: str, limit: int = 10) -> list[Any]:
        return refresh_history(self._engine, subject, limit, provider)

    # -- what callers need to know about a provider -----------------------------------

    def access_rejected(self, provider: str, code: int | None) -> bool:
        """Whether an API answer's code means "access token expired" (pass `rejected=`)."""
        return self.provider(provider).access_rejected(code)

    def api_url(self, provider: str) -> str:
        return self.credentials(provider).api_url

    def declared(self) -> dict[str, Provider]:
        if self._declared is None:
            self._declared = declared_providers(self._settings.pipeline_modules)
        return self._declared

    def provider(self, name: str) -> Provider:
        declared = self.declared()
        if name in declared:
            return declared[name]
        if name in self._settings.oauth_providers:
            raise ProviderNotConfigured(
                f"provider {name} is in OAUTH_PROVIDERS but no module in PIPELINE_MODULES "
                f"({self._settings.pipeline_modules}) declares it: add it to a module's PROVIDERS")
        known = ", ".join(sorted(declared)) or "none"
        raise ProviderNotConfigured(f"unknown provider {name!r} (declared: {known}); declare it in a "
                                    "PIPELINE_MODULES module's PROVIDERS and add it to OAUTH_PROVIDERS")

    def credentials(self, name: str) -> Credentials:
        provider = self.provider(name)
        configured = self._settings.oauth_providers.get(name)
        if configured is None:
            raise ProviderNotConfigured(
                f"provider {name} has no credentials: add it to OAUTH_PROVIDERS, e.g. "
                f'{{"{name}": {{"client_id": "…", "client_secret": "…"}}}}')
        try:
            return provider.credentials(configured.client_id, configured.client_secret.get_secret_value(),
                                        configured.token_url, configured.api_url)
        except ValueError as exc:
            raise ProviderNotConfigured(str(exc)) from exc

    def store(self, name: str) -> TokenStore:
        """The token store of one configured provider."""
        if name not in self._stores:
            provider = self.provider(name)
            credentials = self.credentials(name)

            def exchange(refresh_token: str) -> TokenPair:
                status, body = self._post(provider.grant.build(credentials, refresh_token))
                return provider.token_pair(status, body, self._now())

            self._stores[name] = TokenStore(self._engine, self._redis, self._box, self._settings,
                                            GrantKind(name, provider.label), exchange, now=self._now,
                                            retry_wait=self._retry_wait)
        return self._stores[name]

    def _reader(self, name: str) -> TokenStore:
        """A store for reading and forgetting grants, which needs no credentials (a provider
        removed from the settings can still be logged out)."""
        if name in self._stores:
            return self._stores[name]
        if name == FEISHU:
            raise ProviderNotConfigured("Feishu user grants: run `feishu-bridge auth logout` "
                                        "without --provider")

        def no_exchange(refresh_token: str) -> TokenPair:
            raise ProviderNotConfigured(f"provider {name} is not configured")

        return TokenStore(self._engine, self._redis, self._box, self._settings, GrantKind(name), no_exchange)
