"""What a Python source is handed (`FetchContext`) and what it may give back (`FetchResult`).

A source is `def fetch(ctx: FetchContext) -> list[dict] | FetchResult`, called once per day of
a run. It reads `ctx.day`, calls its API with `ctx.http` and `ctx.token()`, and returns rows keyed
by the target table's field names. When the API says the token expired, `ctx.token_rejected(t)`
refreshes it and returns the new one.

The token is the pipeline's `provider`'s (an ad platform's OAuth), from the process's provider
token store (`services.provider_tokens`, bot/tokens/provider_tokens.py), looked up on the first
`ctx.token()`: a source that needs none never touches it.
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
    """What a source's tokens come from (`ProviderTokens`; a test's stand-in): a valid access
    token, refreshed when needed or at once when the provider rejected `rejected`."""

    def get_valid_token(self, provider: str, *, rejected: str | None = None) -> str: ...

    def api_url(self, provider: str) -> str: ...


class ProviderTokensMissing(RuntimeError):
    """A source asked for a token but its pipeline names no provider (or, in a test, no token
    store was given): a permanent failure."""


def token_source(services: Any) -> TokenSource:
    """The process's provider token store (`services.provider_tokens`); `Any`, as a test's
    services stand-in may lack one."""
    source = getattr(services, "provider_tokens", None)
    if source is None:
        raise ProviderTokensMissing("provider tokens not configured: these services have no provider "
                                    "token store, so a source cannot call ctx.token()")
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
    """One day of one run, as its source sees it."""

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
