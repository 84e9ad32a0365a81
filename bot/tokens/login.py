"""The OAuth login flow: an authorise URL with a one-time state, then the callback's exchange."""

from __future__ import annotations

import secrets

from bot.models import utcnow
from bot.services import Services
from bot.tokens.oauth import OAuthError, authorize_url, code_grant_body, parse_token_response
from bot.tokens.user_tokens import UserInfo

STATE_TTL_SECONDS = 600


class LoginError(RuntimeError):
    """The callback cannot complete; the message says why (shown to the user)."""


def _state_key(state: str) -> str:
    return f"fb:oauth-state:{state}"


def start_login(services: Services) -> str:
    """The URL to send the user to; its state is valid for ten minutes, once."""
    settings = services.settings
    state = secrets.token_urlsafe(24)
    services.redis.set(_state_key(state), "1", ex=STATE_TTL_SECONDS)
    return authorize_url(settings.effective_accounts_url, settings.feishu_app_id,
                         settings.effective_redirect_url, settings.oauth_scopes, state)


def complete_login(services: Services, code: str, state: str) -> UserInfo:
    """Exchange the code, learn who authorised, store the grant."""
    if not code or not state:
        raise LoginError("the callback needs both `code` and `state`")
    if services.redis.getdel(_state_key(state)) is None:
        raise LoginError("unknown or expired login state; start again with `feishu-bridge auth login`")
    settings = services.settings
    status, payload = services.feishu.post_oauth_token(code_grant_body(
        settings.feishu_app_id, settings.feishu_app_secret.get_secret_value(), code,
        settings.effective_redirect_url))
    try:
        pair = parse_token_response(status, payload, utcnow())
    except OAuthError as exc:
        raise LoginError(f"Feishu did not accept the authorisation code: {exc.message}") from exc

    from lark_oapi.api.authen.v1 import GetUserInfoRequest

    response = services.feishu.call(
        "authen.v1.user_info.get",
        lambda client, option: client.authen.v1.user_info.get(GetUserInfoRequest.builder().build(), option),
        user_access_token=pair.access_token,
    )
    user = UserInfo(subject=response.data.open_id, name=response.data.name or "")
    services.user_tokens.store_grant(user, pair)
    return user
