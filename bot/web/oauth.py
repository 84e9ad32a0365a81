"""`/oauth/login` (redirects to Feishu's authorise page) and `/oauth/callback` (stores the grant)."""

from __future__ import annotations

import html
import logging

from flask import Blueprint, redirect, request

from bot.feishu import FeishuAPIError
from bot.tokens.login import LoginError, complete_login, start_login
from bot.web import app_services

log = logging.getLogger(__name__)

bp = Blueprint("oauth", __name__)

PAGE = """<!doctype html><html lang="zh"><meta charset="utf-8"><title>Feishu Bridge</title>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>{title}</h1><p>{body}</p></body></html>"""


def _page(title: str, body: str, status: int):
    return PAGE.format(title=html.escape(title), body=html.escape(body)), status, {
        "Content-Type": "text/html; charset=utf-8"}


@bp.get("/oauth/login")
def login():
    services = app_services()
    return redirect(start_login(services), code=302)


@bp.get("/oauth/callback")
def callback():
    services = app_services()
    if request.args.get("error"):
        return _page("授权未完成", f"Feishu reported: {request.args['error']}", 400)
    try:
        user = complete_login(services, request.args.get("code", ""), request.args.get("state", ""))
    except LoginError as exc:
        log.info("oauth callback refused", extra={"reason": str(exc)})
        return _page("授权失败", str(exc), 400)
    except FeishuAPIError as exc:
        log.warning("oauth callback: Feishu call failed", extra={"error": str(exc)})
        return _page("授权失败", f"Feishu call failed: {exc.msg} (code {exc.code})", 502)
    return _page("授权成功", f"已授权：{user.name or user.subject}。You can close this window.", 200)
