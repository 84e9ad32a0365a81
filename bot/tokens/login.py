"""The OAuth login flow: an authorise URL with a one-time state bound to the browser that
asked for it, then the callback's exchange.

Who may start a login: the web app decides (an admin session, or a one-time ticket from
`login_link`, printed by `feishu-bridge auth login`). The state stores a hash of the starting
browser's binding, and the callback must present the same binding: a state (or a code) that
leaks to another browser cannot complete the grant there.
"""

from __future__ import annotations

import hashlib
import hmac
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


def _ticket_key(ticket: str) -> str:
    return "fb:oauth-ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


def _binding_hash(binding: str) -> str:
    return hashlib.sha256(b"fb-oauth-binding:" + binding.encode()).hexdigest()


def login_link(services: Services) -> str:
    """A one-time link to the web app's /oauth/login, valid for ten minutes: how `auth login`
    lets a user start a login without the dashboard's admin session."""
    ticket = secrets.token_urlsafe(24)
    services.redis.set(_ticket_key(ticket), "1", ex=STATE_TTL_SECONDS)
    base = services.settings.effective_redirect_url.rsplit("/oauth/", 1)[0]
    return f"{base}/oauth/login?ticket={ticket}"


def use_ticket(services: Services, ticket: str) -> bool:
    """True (once) for a ticket `login_link` issued and that has not expired."""
    return bool(ticket) and len(ticket) < 100 and services.redis.getdel(_ticket_key(ticket)) is not None


def start_login(services: Services, binding: str) -> str:
    """The URL to send the user to; its state is valid for ten minutes, once, and only for a
    callback that presents the same `binding` (a secret the starting browser holds)."""
    settings = services.settings
    state = secrets.token_urlsafe(24)
    services.redis.set(_state_key(state), _binding_hash(binding), ex=STATE_TTL_SECONDS)
    return authorize_url(settings.effective_accounts_url, settings.feishu_app_id,
                         settings.effective_redirect_url, settings.oauth_scopes, state)


def complete_login(services: Services, code: str, state: str, binding: str | None) -> UserInfo:
    """Exchange the code, learn who authorised, store the grant."""
    if not code or not state:
        raise LoginError("the callback needs both `code` and `state`")
    stored = services.redis.getdel(_state_key(state))
    if stored is None:
        raise LoginError("unknown or expired login state; start again with `feishu-bridge auth login`")
    expected = stored.decode() if isinstance(stored, bytes) else str(stored)
    if not binding or not hmac.compare_digest(expected, _binding_hash(binding)):
        raise LoginError("this login was started in another browser; start again from the dashboard "
                         "or with `feishu-bridge auth login`")
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
