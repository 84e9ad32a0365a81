"""The one way to call the Feishu open platform.

`Feishu.call(operation, send, as_user=…)` runs `send(client, option)` — which builds a
fresh lark-oapi request (the SDK mutates requests and options) and calls one SDK method —
with the right token: the tenant token the SDK fetches (cached in Redis for all processes),
or a user token from `UserTokens.get_valid_user_token`. A call answered with a token
expired/invalid code refreshes that token once and is retried once. The raw lark client is
only ever handed to `send`: no code reads or holds a token itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt

from bot.config import Settings
from bot.masking import register_secrets
from bot.metrics import FEISHU_RETRIES, TOKEN_RETRIES
from bot.tokens.oauth import TOKEN_PATH

if TYPE_CHECKING:  # lark-oapi takes seconds to import: only where a client is built or called
    import lark_oapi as lark
    from lark_oapi.core.model import RequestOption

    from bot.tokens.tenant_cache import RedisTokenCache
    from bot.tokens.user_tokens import UserTokens

log = logging.getLogger(__name__)

# Tenant token invalid/expired, user token invalid, token expired.
TOKEN_REJECTED_CODES = frozenset({99991663, 99991668, 99991677})
RATE_LIMITED = 99991400

R = TypeVar("R")


def build_client(settings: Settings, cache: RedisTokenCache | None = None) -> lark.Client:
    import lark_oapi as lark

    builder = (
        lark.Client.builder()
        .app_id(settings.feishu_app_id or "cli_unset")
        .app_secret(settings.feishu_app_secret.get_secret_value() or "unset")
        .domain(settings.feishu_base_url)
        .enable_set_token(True)  # user tokens are passed per call; tenant tokens still automatic
        .log_level(lark.LogLevel.WARNING)
    )
    if cache is not None:
        builder = builder.cache(cache)
    return builder.build()


def _is_transient(response: Any) -> bool:
    """Rate limited (HTTP 429 / 99991400) or failed on the server (5xx): worth retrying."""
    status = getattr(getattr(response, "raw", None), "status_code", 200) or 200
    return getattr(response, "code", None) == RATE_LIMITED or status == 429 or status >= 500


class FeishuAPIError(RuntimeError):
    """An open-platform call answered with a non-zero code."""

    def __init__(self, operation: str, code: int | None, msg: str | None, log_id: str | None):
        self.operation = operation
        self.code = code
        self.msg = msg
        self.log_id = log_id
        super().__init__(f"{operation} failed: code={code} msg={msg} log_id={log_id}")


def raise_for_response(operation: str, response) -> None:
    """lark-oapi returns failures as values; turn them into exceptions so RQ retries them."""
    if not response.success():
        raise FeishuAPIError(operation, response.code, response.msg, response.get_log_id())


class Feishu:
    def __init__(self, client: lark.Client, settings: Settings, cache: RedisTokenCache | None,
                 user_tokens: UserTokens | None = None) -> None:
        self._client = client
        self._settings = settings
        self._cache = cache
        self.user_tokens = user_tokens

    def call(self, operation: str, send: Callable[[lark.Client, RequestOption], R], *,
             as_user: str | None = None, user_access_token: str | None = None) -> R:
        """Run one SDK call; raises FeishuAPIError unless it succeeds. A rejected token is
        refreshed and the call retried once; rate limits and server errors are retried with
        backoff (honouring `x-ogw-ratelimit-reset`) up to FEISHU_RETRIES times."""
        token = user_access_token or (self._user_token(as_user) if as_user else None)
        token_retried = bool(user_access_token)

        def attempt() -> R:
            nonlocal token, token_retried
            response = send(self._client, self._option(token))
            code = getattr(response, "code", None)
            if code in TOKEN_REJECTED_CODES and not token_retried:
                token_retried = True
                log.info("token rejected; refreshing once and retrying",
                         extra={"operation": operation, "code": code, "as_user": bool(as_user)})
                TOKEN_RETRIES.labels("user" if as_user else "tenant").inc()
                if as_user:
                    token = self._user_token(as_user, rejected=token)
                else:
                    self._forget_tenant_token()
                response = send(self._client, self._option(token))
            return response

        retrying = Retrying(
            stop=stop_after_attempt(self._settings.feishu_retries + 1),
            retry=retry_if_result(_is_transient),
            wait=self._wait,
            before_sleep=lambda _: FEISHU_RETRIES.labels(operation).inc(),
            retry_error_callback=lambda state: state.outcome.result(),  # the last answer, raised below
        )
        response = retrying(attempt)
        raise_for_response(operation, response)
        return response

    def _wait(self, state: RetryCallState) -> float:
        """Before retrying a rate-limited or server-failed call: the server's reset hint, else
        exponential backoff; capped by FEISHU_RETRY_MAX_WAIT."""
        cap = self._settings.feishu_retry_max_wait
        raw = getattr(state.outcome.result(), "raw", None)
        headers = {k.lower(): v for k, v in (getattr(raw, "headers", None) or {}).items()}
        try:
            return min(cap, max(0.0, float(headers["x-ogw-ratelimit-reset"])))
        except (KeyError, ValueError):
            return min(cap, 0.5 * 2 ** (state.attempt_number - 1))

    def post_oauth_token(self, body: dict[str, str]) -> tuple[int, Any]:
        """The v2 OAuth token endpoint (no access token; answers flat JSON): (HTTP status, JSON)."""
        import lark_oapi as lark

        request = (
            lark.BaseRequest.builder()
            .http_method(lark.HttpMethod.POST)
            .uri(TOKEN_PATH)
            .token_types(set())
            .headers({"Content-Type": "application/json; charset=utf-8"})
            .body(body)
            .build()
        )
        raw = self._client.request(request).raw
        try:
            payload = json.loads(raw.content or b"null")
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            register_secrets([payload.get("access_token"), payload.get("refresh_token")])
        return raw.status_code, payload

    def _user_token(self, subject: str, rejected: str | None = None) -> str:
        if self.user_tokens is None:
            raise RuntimeError("user tokens are not configured in this process")
        cause = "expired_retry" if rejected else "on_demand"
        return self.user_tokens.get_valid_user_token(subject, rejected=rejected, cause=cause)

    def _forget_tenant_token(self) -> None:
        # The SDK does not evict a token the server rejected; without this it would resend it.
        from lark_oapi.core.token.manager import TokenManager

        from bot.tokens.tenant_cache import tenant_token_key

        key = tenant_token_key(self._settings.feishu_app_id)
        if self._cache is not None:
            self._cache.delete(key)
        else:
            TokenManager.cache.set(key, "", 0)

    @staticmethod
    def _option(user_token: str | None) -> RequestOption:
        from lark_oapi.core.model import RequestOption

        builder = RequestOption.builder()
        if user_token:
            builder = builder.user_access_token(user_token)
        return builder.build()
