"""Authorising the sandbox user through the real flow, for tests."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import httpx
from sqlalchemy import update

from bot.models import OAuthToken, utcnow
from bot.tokens.login import complete_login, start_login
from bot.tokens.user_tokens import UserInfo


def authorize(services) -> UserInfo:
    """Open the authorise URL (the sandbox auto-approves), then run the callback's exchange in
    the same (pretend) browser: the state is bound to it."""
    response = httpx.get(start_login(services, "test-browser"), follow_redirects=False)
    assert response.status_code == 302, response.text
    query = parse_qs(urlparse(response.headers["location"]).query)
    return complete_login(services, query["code"][0], query["state"][0], "test-browser")


def admin_client(app):
    """A Flask test client logged in to the dashboard (what starting a login through the web
    app needs)."""
    client = app.test_client()
    token = app.extensions["feishu_bridge"].settings.admin_token.get_secret_value()
    answer = client.post("/login", data={"token": token}, headers={"Origin": "http://localhost"})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client


def expire_in(services, subject: str, seconds: float) -> None:
    """Pretend the stored access token expires `seconds` from now."""
    with services.engine.begin() as conn:
        conn.execute(update(OAuthToken).where(OAuthToken.subject == subject)
                     .values(expires_at=utcnow() + timedelta(seconds=seconds)))
