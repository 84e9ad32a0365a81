"""External OAuth providers (an ad platform's API, …): how their refresh tokens are exchanged.
Pure: requests are built and answers read here; bot/tokens/provider_tokens.py sends them.

A provider is declared in Python (a module listed in PIPELINE_MODULES exports
`PROVIDERS: list[Provider]`); its credentials come from the settings (OAUTH_PROVIDERS):

    from bot.tokens.providers import Provider, json_app_secret_grant

    ADS = Provider("ads", api_url="https://ads.example.com", token_url="/open_api/oauth2/refresh_token/",
                   grant=json_app_secret_grant, access_seconds=86400, refresh_seconds=30 * 86400,
                   expired_codes={40102}, grant_invalid_codes={40103, 40107}, transient_codes={40100, 50000})
    PROVIDERS = [ADS]

(OAUTH_PROVIDERS' `api_url` then moves both endpoints, e.g. to the sandbox's `…/ads`.)

A grant style is a pair of pure callables, `build(credentials, refresh_token) -> TokenRequest`
and `parse(http_status, json_body) -> Answer`. `StandardGrant` is OAuth 2.0's refresh-token
grant (RFC 6749 §6, the request built with Authlib); `NonStandardGrant(build, parse)` takes a
provider's own, e.g. `json_app_secret_grant`. The provider's error codes then decide what an
answer's failure means: transient (retry), the grant is gone (re-authorise), or other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from bot.tokens.oauth import ErrorClass, OAuthError, TokenPair

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
FEISHU = "feishu"  # the provider of Feishu user tokens (bot/tokens/user_tokens.py), not declarable
# RFC 6749 §5.2 errors that say "try again later" (the others are the client's or the grant's).
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error", "slow_down"})


@dataclass(frozen=True)
class Credentials:
    """A provider's credentials and endpoints, resolved (settings over the declaration)."""

    client_id: str
    client_secret: str = field(repr=False)
    token_url: str
    api_url: str = ""


@dataclass(frozen=True)
class TokenRequest:
    """One POST to a token endpoint: a JSON body, or a form body (already encoded)."""

    url: str
    json: dict[str, Any] | None = field(default=None, repr=False)
    form: str | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Answer:
    """A token endpoint's answer, read: the new tokens, or why there are none."""

    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: int | None = None
    refresh_expires_in: int | None = None
    scope: str = ""
    code: int | None = None  # a numeric error code (0 or None when it succeeded)
    error: str | None = None  # an RFC 6749 error name, e.g. "invalid_grant"
    message: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.access_token) and self.code in (0, None) and self.error is None


Build = Callable[[Credentials, str], TokenRequest]
Parse = Callable[[int, Any], Answer]


@dataclass(frozen=True)
class NonStandardGrant:
    """A provider's own refresh request and answer (see `json_app_secret_grant`)."""

    build: Build
    parse: Parse
    name: str = "custom"


@dataclass(frozen=True)
class StandardGrant:
    """OAuth 2.0's refresh-token grant (RFC 6749 §6): a form POST, the client authenticated in the
    body (`client_secret_post`) or with Basic (`client_secret_basic`); a JSON answer (§5.1, §5.2)."""

    auth_method: Literal["client_secret_post", "client_secret_basic"] = "client_secret_post"
    scope: str | None = None
    name: str = "rfc6749"

    def build(self, credentials: Credentials, refresh_token: str) -> TokenRequest:
        from authlib.oauth2.auth import ClientAuth
        from authlib.oauth2.rfc6749.parameters import prepare_token_request

        extra = {"scope": self.scope} if self.scope else {}
        body = prepare_token_request("refresh_token", refresh_token=refresh_token, **extra)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        auth = ClientAuth(credentials.client_id, credentials.client_secret, self.auth_method)
        url, headers, body = auth.prepare("POST", credentials.token_url, headers, body)
        return TokenRequest(url=url, form=body, headers=headers)

    def parse(self, status: int, body: Any) -> Answer:
        return parse_rfc6749(status, body)


GrantStyle = StandardGrant | NonStandardGrant


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def parse_rfc6749(status: int, body: Any) -> Answer:
    if not isinstance(body, dict):
        return Answer(message=f"token endpoint answered HTTP {status} without a JSON object")
    if body.get("error") or status != 200:
        error = str(body.get("error") or "") or None
        return Answer(code=_int(body.get("code")), error=error,
                      message=str(body.get("error_description") or error or f"HTTP {status}"))
    return Answer(access_token=_str(body.get("access_token")), refresh_token=_str(body.get("refresh_token")),
                  expires_in=_int(body.get("expires_in")),
                  refresh_expires_in=_int(body.get("refresh_token_expires_in")
                                          or body.get("refresh_expires_in")),
                  scope=str(body.get("scope") or ""),
                  message="" if body.get("access_token") else "the answer has no access_token")


def _str(value: Any) -> str | None:
    return str(value) if value else None


# -- a non-standard style: JSON {app_id, secret, grant_type, refresh_token}, answers in a code envelope


def build_json_app_secret(credentials: Credentials, refresh_token: str) -> TokenRequest:
    return TokenRequest(url=credentials.token_url, json={
        "app_id": credentials.client_id, "secret": credentials.client_secret,
        "grant_type": "refresh_token", "refresh_token": refresh_token,
    }, headers={"Content-Type": "application/json"})


def parse_code_envelope(status: int, body: Any) -> Answer:
    """`{"code": 0, "message": "OK", "data": {access_token, expires_in, refresh_token,
    refresh_token_expires_in}}`; errors carry a non-zero `code` (usually with HTTP 200)."""
    if not isinstance(body, dict):
        return Answer(message=f"token endpoint answered HTTP {status} without a JSON object")
    code = _int(body.get("code"))
    message = str(body.get("message") or body.get("msg") or f"HTTP {status}")
    if code not in (0, None) or status != 200:
        return Answer(code=code if code not in (0, None) else None, message=message)
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    return Answer(access_token=_str(data.get("access_token")), refresh_token=_str(data.get("refresh_token")),
                  expires_in=_int(data.get("expires_in")),
                  refresh_expires_in=_int(data.get("refresh_token_expires_in")),
                  scope=str(data.get("scope") or ""), code=code,
                  message="" if data.get("access_token") else "the answer has no access_token")


json_app_secret_grant = NonStandardGrant(build=build_json_app_secret, parse=parse_code_envelope,
                                         name="json_app_secret")


# -- the declaration ----------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    """An external OAuth provider, declared by name. `token_url`/`api_url` are defaults that
    OAUTH_PROVIDERS may override (e.g. to point at the sandbox); a `token_url` that is a path is
    under `api_url`. `access_seconds` and
    `refresh_seconds` stand in when an answer omits a lifetime. `expired_codes`: what the
    provider's API answers when an access token expired — a caller that sees one asks again with
    `rejected=` that token; `grant_invalid_codes`: refresh answers meaning the grant is gone;
    `transient_codes`: refresh answers worth retrying."""

    name: str
    token_url: str = ""
    grant: GrantStyle = field(default_factory=StandardGrant)
    api_url: str = ""
    access_seconds: int = 3600
    refresh_seconds: int | None = None
    expired_codes: Iterable[int] = frozenset()
    grant_invalid_codes: Iterable[int] = frozenset()
    transient_codes: Iterable[int] = frozenset()
    title: str = ""

    def __post_init__(self) -> None:
        if not NAME.match(self.name) or self.name == FEISHU:
            raise ValueError(f"provider name {self.name!r}: lower-case letters, digits, '-' and '_' "
                             f"(at most 64), not {FEISHU!r}")
        for name in ("expired_codes", "grant_invalid_codes", "transient_codes"):
            object.__setattr__(self, name, frozenset(int(c) for c in getattr(self, name)))
        if not isinstance(self.grant, StandardGrant | NonStandardGrant):
            raise ValueError(f"provider {self.name}: grant must be a StandardGrant or NonStandardGrant")

    @property
    def label(self) -> str:
        return self.title or self.name

    def access_rejected(self, code: int | None) -> bool:
        """Whether an API answer with this code means "the access token expired": ask again with
        `rejected=` the token just used."""
        return code is not None and code in self.expired_codes

    def classify(self, status: int | None, answer: Answer) -> ErrorClass:
        if status is None or status >= 500 or status == 429:
            return ErrorClass.TRANSIENT
        if answer.code in self.transient_codes or answer.error in TRANSIENT_ERRORS:
            return ErrorClass.TRANSIENT
        if answer.code in self.grant_invalid_codes or answer.error == "invalid_grant":
            return ErrorClass.GRANT_INVALID
        return ErrorClass.OTHER

    def token_pair(self, status: int, body: Any, now: datetime) -> TokenPair:
        """The new pair from a refresh answer, or raises OAuthError classified for the caller."""
        answer = self.grant.parse(status, body)
        if not answer.ok or status != 200:
            raise OAuthError(self.classify(status, answer), answer.code or None,
                             answer.message or answer.error or f"HTTP {status}")
        refresh_in = answer.refresh_expires_in or self.refresh_seconds
        return TokenPair(
            access_token=str(answer.access_token), refresh_token=answer.refresh_token,
            expires_at=now + timedelta(seconds=answer.expires_in or self.access_seconds),
            refresh_expires_at=now + timedelta(seconds=refresh_in) if refresh_in else None,
            scopes=answer.scope,
        )

    def credentials(self, client_id: str, client_secret: str, token_url: str = "", api_url: str = ""
                    ) -> Credentials:
        """The declaration's endpoints unless the settings name others; a token URL that is a path
        (`/open_api/oauth2/refresh_token/`) is under the API URL."""
        url, api = token_url or self.token_url, api_url or self.api_url
        if url.startswith("/") and api:
            url = api.rstrip("/") + url
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"provider {self.name} has no token URL: set token_url (or api_url, when the "
                             "declared token_url is a path) in OAUTH_PROVIDERS")
        return Credentials(client_id, client_secret, url, api)


def provider_fix(name: str, subject: str, default_subject: str) -> str:
    """The command that stores a new grant for (provider, subject)."""
    command = f"feishu-bridge auth provider-login {name}"
    return command if subject == default_subject else f"{command} --subject {subject}"
