"""What a Python source is handed (`FetchContext`) and what it may give back (`FetchResult`).

A source is `def fetch(ctx: FetchContext) -> list[dict] | FetchResult`, called once per day of
a run. It reads `ctx.day`, calls its API with `ctx.http` and `ctx.token()`, and returns rows keyed
by the target table's field names. When the API says the token expired, `ctx.token_rejected(t)`
forces a refresh and returns the new token (once per call is the norm, as the gateway does).

Tokens of external providers (an ad platform's OAuth) come from a `TokenSource`. That store is
being built in bot/tokens/; until a process has one (`services.provider_tokens`), a pipeline
that asks for a token fails with a clear "provider tokens not configured".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import requests

log = logging.getLogger("bot.pipelines.source")


@runtime_checkable
class TokenSource(Protocol):
    """A valid access token of an external provider, refreshed when needed — or at once when
    the caller says the provider rejected `rejected`."""

    def get_valid_token(self, provider: str, *, rejected: str | None = None) -> str: ...

    def api_url(self, provider: str) -> str: ...


class ProviderTokensMissing(RuntimeError):
    """This process has no provider token store, or the pipeline names no provider."""


def token_source(services: Any) -> TokenSource:
    """The process's provider token store (`services.provider_tokens`), when it has one."""
    source = getattr(services, "provider_tokens", None)
    if source is None:
        raise ProviderTokensMissing("provider tokens not configured: this bridge has no external-provider "
                                    "token store yet (bot/tokens), so a source cannot call ctx.token()")
    return source


@dataclass
class FetchResult:
    """Rows, plus what the summary should know: the groups (accounts) the source meant to fetch
    and those it could not (with why) — "6/7 accounts" comes from here."""

    rows: list[dict[str, Any]]
    expected_groups: list[str] = field(default_factory=list)
    failed_groups: dict[str, str] = field(default_factory=dict)


@dataclass
class FetchContext:
    pipeline: str
    day: date
    http: requests.Session
    log: logging.LoggerAdapter
    provider: str | None = None
    tokens: Callable[[], TokenSource] | None = None  # resolved on first use: most sources need none
    alive: Callable[[], None] = lambda: None  # a long source may call this: the run is not stalled

    def _source(self) -> tuple[str, TokenSource]:
        if not self.provider:
            raise ProviderTokensMissing(f"pipeline {self.pipeline} names no provider, so it has no token")
        if self.tokens is None:
            raise ProviderTokensMissing("provider tokens not configured")
        return self.provider, self.tokens()

    def token(self) -> str:
        """A valid token of the pipeline's provider."""
        provider, source = self._source()
        return source.get_valid_token(provider)

    def api_url(self) -> str:
        """The provider's API base (OAUTH_PROVIDERS' api_url, else its declaration's)."""
        provider, source = self._source()
        return source.api_url(provider).rstrip("/")

    def token_rejected(self, token: str) -> str:
        """The provider said `token` is expired or invalid: refresh now, return the new one."""
        provider, source = self._source()
        return source.get_valid_token(provider, rejected=token)


def source_logger(pipeline: str, day: date) -> logging.LoggerAdapter:
    """A logger whose lines name the pipeline and the day (the JSON logs carry both)."""
    return logging.LoggerAdapter(log, {"pipeline": pipeline, "day": day.isoformat()})
