"""Attacks on the web surfaces (issue 15): unsigned events, session cookies and logins, CSRF on
rq-dashboard, anonymous OAuth logins. Each test plays the attacker over HTTP (or the command
line) and asserts what actually happened: a receipt, a grant, a queue, a redirect."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from sqlalchemy import func, select

from bot.config import Settings
from bot.db import init_schema
from bot.models import EventReceipt, OAuthToken
from bot.services import Services, build_services
from tests import processes
from tests.conftest import make_settings

SAME_ORIGIN = {"Origin": "http://localhost"}
EVIL_ORIGIN = {"Origin": "https://evil.example"}
REAL_FEISHU = "https://open.feishu.cn"  # not the sandbox: the production rules apply


def _token(settings: Settings) -> str:
    return settings.admin_token.get_secret_value()


def _login(client, settings: Settings, **kwargs):
    return client.post("/login", data={"token": _token(settings)}, headers=SAME_ORIGIN, **kwargs)


def _event(open_id: str = "ou_admin", text: str = "/status") -> dict:
    return {"schema": "2.0",
            "header": {"event_id": "ev-forged-1", "event_type": "im.message.receive_v1",
                       "create_time": "1700000000000", "tenant_key": "t", "app_id": "cli_x"},
            "event": {"sender": {"sender_id": {"open_id": open_id}, "sender_type": "user"},
                      "message": {"message_id": "om_forged", "chat_id": "oc_x", "chat_type": "p2p",
                                  "message_type": "text", "content": json.dumps({"text": text})}}}


# -- 1. unsigned events ------------------------------------------------------------------------


@pytest.fixture
def unsigned_services(tmp_path: Path, redis_url: str, redis_conn: Redis) -> Iterator[Services]:
    """A production configuration (real Feishu base URL) with neither event secret set."""
    settings = make_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'bridge.db'}",
                             redis_url=redis_url, feishu_base_url=REAL_FEISHU,
                             feishu_encrypt_key="", feishu_verification_token="")
    built = build_services(settings)
    init_schema(built.engine)
    yield built
    built.close()


def test_unsigned_event_is_refused_outside_the_sandbox(unsigned_services: Services):
    from bot.app import create_app

    client = create_app(services=unsigned_services).test_client()
    answer = client.post("/webhook/event", json=_event())
    assert answer.status_code in (401, 503), answer.get_data(as_text=True)
    with unsigned_services.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(EventReceipt)) == 0


def _cli(cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in __import__("os").environ.items()
            if not k.startswith(("FEISHU_", "DATABASE_", "REDIS_", "ADMIN_", "VAR_DIR", "PORT"))}
    base.update(env)
    return processes.run([sys.executable, "-m", "bot.cli", *argv], cwd=cwd, env=base, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)


LONG_TOKEN = "x" * 40


def test_web_refuses_to_start_without_event_secrets(tmp_path: Path):
    done = _cli(tmp_path, "web", "--port", "1", ADMIN_TOKEN=LONG_TOKEN)
    assert done.returncode != 0
    line = done.stderr.strip()
    assert "FEISHU_ENCRYPT_KEY" in line and "FEISHU_VERIFICATION_TOKEN" in line, line
    assert "\n" not in line and "Traceback" not in line


def test_up_refuses_to_start_without_event_secrets(tmp_path: Path):
    done = _cli(tmp_path, "up", "--port", "1", ADMIN_TOKEN=LONG_TOKEN)
    assert done.returncode != 0 and "FEISHU_ENCRYPT_KEY" in done.stderr, done.stderr
    assert not (tmp_path / "var" / "stack.json").exists()


def test_config_check_marks_missing_event_secrets_and_short_admin_token_as_errors(tmp_path: Path):
    done = _cli(tmp_path, "config", "check", "--json", ADMIN_TOKEN="short")
    assert done.returncode == 1, done.stdout + done.stderr
    errors = json.loads(done.stdout)["errors"]
    assert any("FEISHU_ENCRYPT_KEY" in e for e in errors)
    assert any("ADMIN_TOKEN" in e and "32" in e for e in errors)


def test_web_refuses_a_short_admin_token(tmp_path: Path):
    done = _cli(tmp_path, "web", "--port", "1", ADMIN_TOKEN="short-token", FEISHU_ENCRYPT_KEY="k" * 20)
    assert done.returncode != 0 and "ADMIN_TOKEN" in done.stderr and "32" in done.stderr, done.stderr


def test_startup_errors_are_pure_and_spare_the_sandbox(tmp_path: Path):
    from bot.web.policy import startup_errors

    prod = make_settings(tmp_path, feishu_base_url=REAL_FEISHU, feishu_encrypt_key="",
                         feishu_verification_token="", admin_token="short")
    assert len(startup_errors(prod)) == 2
    assert startup_errors(prod.model_copy(update={"feishu_base_url": "http://127.0.0.1:9000"})) == []
    good = make_settings(tmp_path, feishu_base_url=REAL_FEISHU)
    assert startup_errors(good) == []


# -- 7. anonymous OAuth logins -------------------------------------------------------------------


def _state_keys(redis: Redis) -> list[bytes]:
    return list(redis.scan_iter("fb:oauth-state:*"))


def test_anonymous_visitors_cannot_start_an_oauth_login(client, redis_conn: Redis):
    answers = [client.get("/oauth/login") for _ in range(20)]
    assert all("/authorize" not in a.headers.get("Location", "") for a in answers)
    assert _state_keys(redis_conn) == []


def _approved_callback(admin) -> str:
    """The admin starts a login; the sandbox approves it; the callback path it redirects to."""
    login = admin.get("/oauth/login")
    assert login.status_code == 302 and "/authorize" in login.headers["Location"]
    approved = httpx.get(login.headers["Location"], follow_redirects=False)
    return "/oauth/callback" + approved.headers["location"].split("/oauth/callback", 1)[1]


def test_another_browser_cannot_complete_the_admins_oauth_login(app, services, sandbox):
    admin, stranger = app.test_client(), app.test_client()
    assert _login(admin, services.settings).status_code == 302
    callback = _approved_callback(admin)
    answer = stranger.get(callback)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    with services.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(OAuthToken)) == 0
    assert admin.get(callback).status_code == 400  # the state was single-use: a new login is needed


def test_the_admins_own_browser_completes_the_login(app, services, sandbox):
    admin = app.test_client()
    _login(admin, services.settings)
    answer = admin.get(_approved_callback(admin))
    assert answer.status_code == 200 and "授权成功" in answer.get_data(as_text=True)


def test_cli_link_starts_a_login_once_without_the_dashboard(app, services, sandbox):
    from bot.tokens.login import login_link

    link = login_link(services)
    path = link[link.index("/oauth/login"):]
    browser = app.test_client()
    first = browser.get(path)
    assert first.status_code == 302 and "/authorize" in first.headers["Location"]
    approved = httpx.get(first.headers["Location"], follow_redirects=False)
    answer = browser.get("/oauth/callback" + approved.headers["location"].split("/oauth/callback", 1)[1])
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert app.test_client().get(path).status_code in (302, 401)  # used up
    assert "/authorize" not in app.test_client().get(path).headers.get("Location", "")


# -- 5. sessions and logins ---------------------------------------------------------------------


def _cookie_values(response) -> dict[str, str]:
    values = {}
    for header in response.headers.getlist("Set-Cookie"):
        name, _, rest = header.partition("=")
        values[name] = rest.split(";", 1)[0]
    return values


def test_session_cookie_is_no_token_oracle_and_dies_at_logout(app, services):
    admin = app.test_client()
    answer = _login(admin, services.settings)
    assert answer.status_code == 302
    oracle = hashlib.sha256(_token(services.settings).encode()).hexdigest()[:16]
    from flask.sessions import SecureCookieSessionInterface

    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    for value in _cookie_values(answer).values():
        try:
            decoded = json.dumps(serializer.loads(value))
        except Exception:
            decoded = value
        assert oracle not in decoded
    stolen = _cookie_values(answer)
    admin.post("/logout", headers=SAME_ORIGIN)
    replay = app.test_client()
    for name, value in stolen.items():
        replay.set_cookie(name, value)
    assert replay.get("/dashboard/panels").status_code == 401


def test_session_cookie_is_secure_behind_https_and_short_lived(app, services):
    answer = services and app.test_client().post(
        "/login", data={"token": _token(services.settings)}, base_url="https://localhost",
        headers={"Origin": "https://localhost"})
    assert answer.status_code == 302
    [cookie] = [h for h in answer.headers.getlist("Set-Cookie") if "Max-Age" in h or "Expires" in h]
    assert "Secure" in cookie and "HttpOnly" in cookie
    max_age = int(cookie.split("Max-Age=", 1)[1].split(";", 1)[0])
    assert 0 < max_age <= 12 * 3600


@pytest.mark.parametrize("target", ["/%09/evil.com", "/\\evil.com", "//evil.com", "https://evil.com",
                                    "/%0d%0a/evil.com", "javascript:alert(1)"])
def test_login_never_redirects_off_site(app, services, target):
    answer = app.test_client().post(f"/login?next={target}", data={"token": _token(services.settings)},
                                    headers=SAME_ORIGIN)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location == "/" and "evil" not in location, location


def test_safe_next_accepts_only_same_site_relative_paths():
    from bot.web.policy import safe_next

    assert safe_next("/rq/0/view/queues?x=1") == "/rq/0/view/queues?x=1"
    for bad in ("", "//evil", "/\t/evil", "/\\evil", "http://evil", "evil", "/a\x00", "/ok\n", None):
        assert safe_next(bad) == "/", bad


def _until(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    return condition()


def test_failed_logins_are_throttled_per_client(app, services):
    attacker = {"REMOTE_ADDR": "203.0.113.9"}
    client = app.test_client()
    codes = [client.post("/login", data={"token": f"guess-{i}"}, headers=SAME_ORIGIN,
                         environ_overrides=attacker).status_code for i in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429], codes
    locked = _login(client, services.settings, environ_overrides=attacker)
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert _login(app.test_client(), services.settings).status_code == 302  # another client is fine


def test_api_bearer_failures_are_throttled_per_client(app, services):
    attacker = {"REMOTE_ADDR": "203.0.113.10"}
    client = app.test_client()
    codes = [client.get("/api/v1/cache", headers={"Authorization": f"Bearer guess-{i}"},
                        environ_overrides=attacker).status_code for i in range(11)]
    assert codes[:10] == [401] * 10 and codes[10] == 429, codes
    right = {"Authorization": f"Bearer {_token(services.settings)}"}
    blocked = client.get("/api/v1/cache", headers=right, environ_overrides=attacker)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert client.get("/api/v1/cache", headers=right).status_code == 200


@pytest.fixture
def rotated(services: Services) -> Iterator:
    """What the operator gets after rotating a leaked ADMIN_TOKEN: a new web app with another
    token, over the same Redis (and database)."""
    from pydantic import SecretStr

    from bot.app import create_app

    built = build_services(services.settings.model_copy(
        update={"admin_token": SecretStr("rotated-admin-token-0002-0123456789abcdef")}))
    application = create_app(services=built)
    application.config["TESTING"] = True
    yield application
    built.close()


def test_rotating_the_admin_token_ends_every_session_and_one_time_link(app, services, rotated, sandbox):
    """Whatever the leaked token opened — a session, a one-time link minted through it, an OAuth
    login it started — stops working once the token is rotated. (`auth login`'s links take access
    to the host, not the token: they are unaffected.)"""
    from bot.tokens.login import login_link

    admin = app.test_client()
    logged_in = _login(admin, services.settings)
    assert admin.get("/dashboard/panels").status_code == 200
    started = admin.get("/oauth/login")  # an OAuth login the session started, approved at Feishu
    approved = httpx.get(started.headers["Location"], follow_redirects=False)
    callback = "/oauth/callback" + approved.headers["location"].split("/oauth/callback", 1)[1]
    hopper = app.test_client()  # a one-time link the session minted (the host-name hop)
    hopper.post("/login", data={"token": _token(services.settings)}, base_url="http://127.0.0.1",
                headers={"Origin": "http://127.0.0.1"})
    hop = hopper.get("/oauth/login", base_url="http://127.0.0.1").headers["Location"]
    host_link = login_link(services).split("localhost:8000", 1)[1]

    stolen = rotated.test_client()
    for name, value in {**_cookie_values(logged_in), **_cookie_values(started)}.items():
        stolen.set_cookie(name, value)
    page = stolen.get("/")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    assert stolen.get("/dashboard/panels").status_code == 401
    assert stolen.get("/", headers={"Accept": "application/json"}).status_code == 401
    assert "/login" in stolen.get("/rq/").headers["Location"]
    assert "/login" in stolen.get("/oauth/login").headers["Location"]
    old = {"Authorization": f"Bearer {_token(services.settings)}"}
    assert stolen.get("/api/v1/cache", headers=old).status_code == 401
    assert rotated.test_client().get(hop.split("localhost:8000", 1)[1]).status_code == 401
    refused = stolen.get(callback)
    assert refused.status_code == 400 and "before ADMIN_TOKEN changed" in refused.get_data(as_text=True)
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OAuthToken)) == 0

    assert "/authorize" in rotated.test_client().get(host_link).headers["Location"]
    fresh = rotated.test_client()  # the new token works
    assert _login(fresh, rotated.extensions["feishu_bridge"].settings).status_code == 302
    assert fresh.get("/dashboard/panels").status_code == 200


# -- 6. CSRF on /rq -----------------------------------------------------------------------------


@pytest.fixture
def admin(app, services):
    client = app.test_client()
    assert _login(client, services.settings).status_code == 302
    return client


def _queued(redis: Redis, name: str = "fb-csrf"):
    from rq import Queue

    queue = Queue(name, connection=redis)
    queue.enqueue("builtins.print", "x")
    return queue


def test_cross_site_post_cannot_empty_a_queue(admin, redis_conn: Redis):
    queue = _queued(redis_conn)
    for headers in (EVIL_ORIGIN, {"Sec-Fetch-Site": "cross-site"}, {}):
        answer = admin.post(f"/rq/queue/{queue.name}/queued/empty", headers=headers)
        assert answer.status_code == 403, (headers, answer.status_code)
    assert queue.count == 1
    assert admin.post(f"/rq/queue/{queue.name}/queued/empty", headers=SAME_ORIGIN).status_code == 200
    assert _until(lambda: queue.count == 0)


def test_cross_site_get_cannot_requeue_failed_jobs(admin, redis_conn: Redis):
    from rq.registry import FailedJobRegistry

    queue = _queued(redis_conn, "fb-csrf-failed")
    job = queue.jobs[0]
    queue.remove(job)
    registry = FailedJobRegistry(queue=queue)
    registry.add(job, ttl=600, exc_string="boom")
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Referer": "https://evil.example/x"}, {}):
        assert admin.get(f"/rq/requeue/{queue.name}", headers=headers).status_code == 403, headers
    assert registry.count == 1 and queue.count == 0
    done = admin.get(f"/rq/requeue/{queue.name}", headers={"Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 200 and done.get_json()["count"] == 1
    assert queue.count == 1


def test_cross_site_logout_is_refused(admin):
    assert admin.post("/logout", headers=EVIL_ORIGIN).status_code == 403
    assert admin.get("/dashboard/panels").status_code == 200


def test_same_origin_needs_evidence_from_the_browser():
    from bot.web.policy import same_origin

    assert same_origin({"Sec-Fetch-Site": "same-origin"}, "bridge.example")
    assert not same_origin({"Sec-Fetch-Site": "same-site", "Origin": "https://bridge.example"},
                           "bridge.example")  # a sibling subdomain is another site's page
    assert same_origin({"Origin": "https://Bridge.example"}, "bridge.example")
    assert not same_origin({"Origin": "https://bridge.example.evil.com"}, "bridge.example")
    assert not same_origin({"Origin": "null"}, "bridge.example")
    assert same_origin({"Referer": "https://bridge.example/rq/"}, "bridge.example")
    assert not same_origin({}, "bridge.example")


def test_login_started_on_another_host_name_hops_to_the_callbacks_host(app, services, sandbox):
    """Cookies follow host names: an admin on 127.0.0.1 whose callback is localhost is sent on
    with a one-time link, so the binding cookie lands where the callback will read it."""
    admin = app.test_client()
    assert admin.post("/login", data={"token": _token(services.settings)}, base_url="http://127.0.0.1",
                      headers={"Origin": "http://127.0.0.1"}).status_code == 302
    hop = admin.get("/oauth/login", base_url="http://127.0.0.1")
    assert hop.status_code == 302 and hop.headers["Location"].startswith("http://localhost:8000/oauth/login?ticket=")
    browser = app.test_client()  # the same browser, now on localhost: no admin session there
    started = browser.get(hop.headers["Location"].split("localhost:8000", 1)[1])
    assert "/authorize" in started.headers["Location"]
    approved = httpx.get(started.headers["Location"], follow_redirects=False)
    answer = browser.get("/oauth/callback" + approved.headers["location"].split("/oauth/callback", 1)[1])
    assert answer.status_code == 200, answer.get_data(as_text=True)
