"""`/oauth/login` (redirects to Feishu's authorise page) and `/oauth/callback` (stores the grant).

Starting a login needs the dashboard's admin session or a one-time ticket from
`feishu-bridge auth login`: anonymous visitors could otherwise fill Redis with states and, in
the sandbox, authorise on the operator's behalf. The browser that starts the login gets a
random binding cookie; the callback only completes in a browser holding it."""

from __future__ import annotations

import html
import logging
import secrets
from urllib.parse import urlsplit

from flask import Blueprint, redirect, request, url_for

from bot.feishu import FeishuAPIError
from bot.tokens.login import (
    STATE_TTL_SECONDS,
    LoginError,
    complete_login,
    login_link,
    start_login,
    use_ticket,
)
from bot.web import app_services
from bot.web.dashboard import logged_in, record_failure, throttled

log = logging.getLogger(__name__)

bp = Blueprint("oauth", __name__)

PAGE = """<!doctype html><html lang="zh"><meta charset="utf-8"><title>Feishu Bridge</title>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>{title}</h1><p>{body}</p></body></html>"""


def _page(title: str, body: str, status: int):
    return PAGE.format(title=html.escape(title), body=html.escape(body)), status, {
        "Content-Type": "text/html; charset=utf-8"}


BINDING_COOKIE = "fb_oauth"


@bp.get("/oauth/login")
def login():
    services = app_services()
    ticket = request.args.get("ticket", "")
    if ticket:
        refusal = throttled("oauth-ticket")
        if refusal is not None:
            return refusal
        if not use_ticket(services, ticket):
            record_failure("oauth-ticket")
            return _page("链接已失效", "This login link is unknown, used, expired or older than "
                         "ADMIN_TOKEN: run `feishu-bridge auth login` again, or log in to the dashboard "
                         "first.", 401)
    elif not logged_in():
        return redirect(url_for("dashboard.login", next="/oauth/login"))
    callback_host = urlsplit(services.settings.effective_redirect_url).hostname
    if not ticket and urlsplit("//" + request.host).hostname != callback_host:
        # Cookies follow host names: the binding must be set on the callback's host (e.g. the
        # admin opened 127.0.0.1, the callback is localhost). Hop there, once, with a ticket.
        return redirect(login_link(services, admin_session=True), code=302)
    binding = secrets.token_urlsafe(32)
    answer = redirect(start_login(services, binding), code=302)
    answer.set_cookie(BINDING_COOKIE, binding, max_age=STATE_TTL_SECONDS, path="/oauth", httponly=True,
                      samesite="Lax", secure=request.is_secure or services.settings.force_https)
    return answer


@bp.get("/oauth/callback")
def callback():
    services = app_services()
    if request.args.get("error"):
        return _page("授权未完成", f"Feishu reported: {request.args['error']}", 400)
    try:
        user = complete_login(services, request.args.get("code", ""), request.args.get("state", ""),
                              request.cookies.get(BINDING_COOKIE))
    except LoginError as exc:
        log.info("oauth callback refused", extra={"reason": str(exc)})
        return _page("授权失败", str(exc), 400)
    except FeishuAPIError as exc:
        log.warning("oauth callback: Feishu call failed", extra={"error": str(exc)})
        return _page("授权失败", f"Feishu call failed: {exc.msg} (code {exc.code})", 502)
    return _page("授权成功", f"已授权：{user.name or user.subject}。You can close this window.", 200)
