"""The OAuth login flow: an authorise URL with a one-time state bound to the browser that
asked for it, then the callback's exchange.

Who may start a login: the web app decides (an admin session, or a one-time ticket from
`login_link`, printed by `feishu-bridge auth login`). The state stores a hash of the starting
browser's binding, and the callback must present the same binding: a state (or a code) that
leaks to another browser cannot complete the grant there. States, and the tickets the web app
mints for an admin session, also remember which ADMIN_TOKEN was in force, so rotating a leaked
token voids them, as it does the sessions; `auth login`'s tickets take host access, not the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from bot.masking import keyed_mark
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


def _admin_mark(services: Services, key: str) -> str:
    """The ADMIN_TOKEN in force, keyed by a secret Redis does not hold (the ticket, the binding)."""
    return keyed_mark(key, services.settings.admin_token.get_secret_value())


HOST_TICKET = "host"  # a ticket `auth login` issued: bound to no ADMIN_TOKEN


def login_link(services: Services, *, admin_session: bool = False) -> str:
    """A one-time link to the web app's /oauth/login, valid for ten minutes: how `auth login`
    lets a user start a login without the dashboard's admin session. One the web app mints for
    an admin session (`admin_session`) dies with that session's ADMIN_TOKEN."""
    ticket = secrets.token_urlsafe(24)
    mark = _admin_mark(services, ticket) if admin_session else HOST_TICKET
    services.redis.set(_ticket_key(ticket), mark, ex=STATE_TTL_SECONDS)
    base = services.settings.effective_redirect_url.rsplit("/oauth/", 1)[0]
    return f"{base}/oauth/login?ticket={ticket}"


def use_ticket(services: Services, ticket: str) -> bool:
    """True (once) for a ticket `login_link` issued that has not expired (nor, if an admin session
    asked for it, outlived its ADMIN_TOKEN)."""
    if not ticket or len(ticket) >= 100:
        return False
    stored = services.redis.getdel(_ticket_key(ticket))
    return stored is not None and (stored == HOST_TICKET.encode()
                                   or hmac.compare_digest(stored, _admin_mark(services, ticket).encode()))


def start_login(services: Services, binding: str) -> str:
    """The URL to send the user to; its state is valid for ten minutes, once, and only for a
    callback that presents the same `binding` (a secret the starting browser holds)."""
    settings = services.settings
    state = secrets.token_urlsafe(24)
    bound = f"{_binding_hash(binding)} {_admin_mark(services, binding)}"
    services.redis.set(_state_key(state), bound, ex=STATE_TTL_SECONDS)
    return authorize_url(settings.effective_accounts_url, settings.feishu_app_id,
                         settings.effective_redirect_url, settings.oauth_scopes, state)


def complete_login(services: Services, code: str, state: str, binding: str | None) -> UserInfo:
    """Exchange the code, learn who authorised, store the grant."""
    if not code or not state:
        raise LoginError("the callback needs both `code` and `state`")
    stored = services.redis.getdel(_state_key(state))
    if stored is None:
        raise LoginError("unknown or expired login state; start again with `feishu-bridge auth login`")
    expected, _, mark = (stored.decode() if isinstance(stored, bytes) else str(stored)).partition(" ")
    if not binding or not hmac.compare_digest(expected, _binding_hash(binding)):
        raise LoginError("this login was started in another browser; start again from the dashboard "
                         "or with `feishu-bridge auth login`")
    if not hmac.compare_digest(mark, _admin_mark(services, binding)):
        raise LoginError("this login was started before ADMIN_TOKEN changed; start again from the "
                         "dashboard or with `feishu-bridge auth login`")
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
