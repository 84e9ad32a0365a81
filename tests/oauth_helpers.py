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
    """Open the authorise URL (the sandbox auto-approves), then run the callback's exchange."""
    response = httpx.get(start_login(services), follow_redirects=False)
    assert response.status_code == 302, response.text
    query = parse_qs(urlparse(response.headers["location"]).query)
    return complete_login(services, query["code"][0], query["state"][0])


def expire_in(services, subject: str, seconds: float) -> None:
    """Pretend the stored access token expires `seconds` from now."""
    with services.engine.begin() as conn:
        conn.execute(update(OAuthToken).where(OAuthToken.subject == subject)
                     .values(expires_at=utcnow() + timedelta(seconds=seconds)))
