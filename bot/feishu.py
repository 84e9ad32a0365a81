"""The one way to call the Feishu open platform.

`Feishu.call(operation, send, as_user=…)` runs `send(client, option)` — which builds a
fresh lark-oapi request (the SDK mutates requests and options) and calls one SDK method —
with the right token: the tenant token the SDK fetches (cached in Redis for all processes),
or a user token from `UserTokens.get_valid_user_token`. A call answered with a token
missing/expired/invalid code refreshes that token once and is retried once. Throttles, server
errors and the failures lark-oapi raises instead of returning (a body that is not JSON, a reset
connection, a timeout) are retried with backoff, honouring Feishu's `x-ogw-ratelimit-reset`;
when retries run out the caller gets a FeishuAPIError, never a raw transport exception. The raw
lark client is only ever handed to `send`: no code reads or holds a token itself.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, retry_if_result, stop_after_attempt

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

# No (or an empty) token, tenant token invalid/expired, user token invalid, user token expired:
# the token is refreshed once and the call retried once (a 99991661 means the token we sent was
# empty, e.g. a bad cache entry: fetching a new one is the cure; a second one is an error).
TOKEN_REJECTED_CODES = frozenset({99991661, 99991663, 99991668, 99991677})
RATE_LIMITED = 99991400
# Throttles, retried like server errors: the gateway's (HTTP 429, or 400 on older APIs) and IM's
# message-send limits, HTTP 400: 230020 (this chat), 11232 (the service), 11233 (chat, older);
# bitable's record writes: 1254290 (TooManyRequest: writing too fast) and 1254291 (Write conflict:
# another write to the same table is in flight — bitable takes one writer per table at a time).
BITABLE_TOO_FAST = 1254290
BITABLE_WRITE_CONFLICT = 1254291
THROTTLED_CODES = frozenset({RATE_LIMITED, 230020, 11232, 11233, BITABLE_TOO_FAST, BITABLE_WRITE_CONFLICT})
RESET_HEADER = "x-ogw-ratelimit-reset"  # seconds until the limit resets (Feishu shows 52)

R = TypeVar("R")


def build_client(settings: Settings, cache: RedisTokenCache | None = None) -> lark.Client:
    import lark_oapi as lark

    builder = (
        lark.Client.builder()
        .app_id(settings.feishu_app_id or "cli_unset")
        .app_secret(settings.feishu_app_secret.get_secret_value() or "unset")
        .domain(settings.feishu_base_url)
        .enable_set_token(True)  # user tokens are passed per call; tenant tokens still automatic
        .timeout(settings.feishu_timeout_seconds)  # a stalled answer becomes a retried timeout
        .log_level(lark.LogLevel.WARNING)
    )
    if cache is not None:
        builder = builder.cache(cache)
    return builder.build()


def _is_transient(response: Any) -> bool:
    """Throttled (HTTP 429, or a throttle code) or failed on the server (5xx): worth retrying."""
    status = getattr(getattr(response, "raw", None), "status_code", 200) or 200
    return getattr(response, "code", None) in THROTTLED_CODES or status == 429 or status >= 500


def unusable_answer(exc: BaseException) -> str | None:
    """What a transient failure lark-oapi raised (instead of returning a response) was, or None
    when `exc` is no such failure: it parses every body as JSON, so a gateway's HTML 502 raises,
    and requests raises on resets and timeouts."""
    import requests

    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return "non-JSON answer"
    network = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
    if isinstance(exc, network):
        return "network error"
    return None


def _is_unusable(exc: BaseException) -> bool:
    return unusable_answer(exc) is not None


def retry_wait(reset_header: str | None, attempt: int, cap: float) -> float:
    """Seconds before retry number `attempt`: the server's reset hint when it sent one (it
    knows when the limit lifts), else exponential backoff from 0.5 s; either way at most `cap`."""
    try:
        hint = float(reset_header) if reset_header is not None else math.nan
    except ValueError:
        hint = math.nan
    if math.isfinite(hint) and hint >= 0:
        return min(cap, hint)
    return min(cap, 0.5 * 2 ** (attempt - 1))


class FeishuAPIError(RuntimeError):
    """An open-platform call answered with a non-zero code."""

    def __init__(self, operation: str, code: int | None, msg: str | None, log_id: str | None,
                 attempts: int = 1):
        self.operation = operation
        self.code = code
        self.msg = msg
        self.log_id = log_id
        self.attempts = attempts
        # a throttle or server error that outlasted the retries says so: not a one-off refusal
        gave_up = f" (still refused after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"{operation} failed: code={code} msg={msg} log_id={log_id}{gave_up}")


class FeishuUnreachable(FeishuAPIError):
    """No usable answer in any attempt: a network error or timeout, or a body that is not JSON
    (a gateway's HTML page). It has no Feishu code; the last transport error is its cause."""

    def __init__(self, operation: str, cause: BaseException, attempts: int = 1) -> None:
        self.kind = unusable_answer(cause) or "network error"
        detail = f"{type(cause).__name__}: {cause}"[:240]
        super().__init__(operation, None, f"{self.kind} ({detail})", None)
        self.attempts = attempts
        RuntimeError.__init__(self, f"{operation} failed: Feishu gave no usable answer in {attempts} "
                                    f"attempt(s): {self.kind} ({detail})")


def raise_for_response(operation: str, response, attempts: int = 1) -> None:
    """lark-oapi returns failures as values; turn them into exceptions so RQ retries them.
    `attempts`: how many the gateway made (more than one: every retry was refused too)."""
    if not response.success():
        msg = response.msg
        if msg is None and response.code is None:  # raw requests and downloads: no JSON to quote
            msg = f"HTTP {getattr(response.raw, 'status_code', '?')} without a JSON body"
        raise FeishuAPIError(operation, response.code, msg, response.get_log_id(), attempts)


def _last_answer(operation: str, state: RetryCallState) -> Any:
    """When retries run out: the last answer (raised by the caller), or the last transport
    failure as a FeishuUnreachable."""
    assert state.outcome is not None
    if state.outcome.failed:
        cause = state.outcome.exception()
        raise FeishuUnreachable(operation, cause, state.attempt_number) from cause
    return state.outcome.result()


def _note_retry(operation: str, state: RetryCallState) -> None:
    assert state.outcome is not None
    if state.outcome.failed:
        reason = unusable_answer(state.outcome.exception()) or "error"
    else:
        answer = state.outcome.result()
        status = getattr(getattr(answer, "raw", None), "status_code", None)
        reason = f"code {getattr(answer, 'code', None)}, HTTP {status}"
    log.info("Feishu call not answered usably; retrying", extra={"operation": operation, "reason": reason,
                                                                 "attempt": state.attempt_number})
    FEISHU_RETRIES.labels(operation).inc()


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
        refreshed and the call retried once; throttles, server errors, non-JSON answers and
        network errors are retried with backoff (honouring `x-ogw-ratelimit-reset`) up to
        FEISHU_RETRIES times, then end in FeishuAPIError (FeishuUnreachable: no answer)."""
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
            retry=retry_if_result(_is_transient) | retry_if_exception(_is_unusable),
            wait=self._wait,
            before_sleep=lambda state: _note_retry(operation, state),
            retry_error_callback=lambda state: _last_answer(operation, state),
        )
        response = retrying(attempt)
        raise_for_response(operation, response, retrying.statistics.get("attempt_number", 1))
        return response

    def _wait(self, state: RetryCallState) -> float:
        """Before a retry: the answer's `x-ogw-ratelimit-reset`, else exponential backoff (also
        after a raised failure, which has no headers); capped by FEISHU_RETRY_MAX_WAIT."""
        hint = None
        if state.outcome is not None and not state.outcome.failed:
            raw = getattr(state.outcome.result(), "raw", None)
            headers = {k.lower(): v for k, v in (getattr(raw, "headers", None) or {}).items()}
            hint = headers.get(RESET_HEADER)
        return retry_wait(hint, state.attempt_number, self._settings.feishu_retry_max_wait)

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
        try:
            raw = self._client.request(request).raw
        except Exception as exc:  # the callers classify this as transient (refresh) or report it (login)
            if unusable_answer(exc) is None:
                raise
            raise FeishuUnreachable("authen.v2.oauth.token", exc) from exc
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
