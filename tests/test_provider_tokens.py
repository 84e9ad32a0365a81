"""External OAuth providers in the token store (issue 17, item 1): the pure provider model, the
settings, the store with an injected transport, and — against the sandbox's ads platform — one
refresh for many processes, rotation, re-authorisation, expiry alerts and the CLI."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from sqlalchemy import select

from bot.cli.errors import explain
from bot.cli.main import main as cli
from bot.config import ProviderCredentials, Settings
from bot.db import init_schema
from bot.models import Alert, TokenRefresh, utcnow
from bot.services import build_services, install
from bot.tokens.kinds import FEISHU_KIND, GrantKind
from bot.tokens.oauth import ErrorClass, OAuthError
from bot.tokens.provider_tokens import ProviderNotConfigured, ProviderTokens, declared_providers
from bot.tokens.providers import (
    Credentials,
    NonStandardGrant,
    Provider,
    StandardGrant,
    TokenRequest,
    json_app_secret_grant,
    parse_code_envelope,
)
from bot.tokens.store import NotAuthorized, ReauthRequired, TokenUnavailable, list_grants
from sandbox.state import DEFAULT_USER_OPEN_ID
from tests import processes
from tests.provider_decls import ADS, ADS_OAUTH2

NOW = datetime(2026, 12, 1, 8, 0, 0)
CREDS = Credentials("1790000001", "sandbox-ads-secret", "https://ads.example/refresh/")


# -- the pure model ----------------------------------------------------------------------------


def _ok(access="at-1", refresh="rt-1", **data):
    return {"code": 0, "message": "OK", "data": {"access_token": access, "refresh_token": refresh, **data}}


def test_json_app_secret_grant_builds_the_platform_body_and_hides_the_secret():
    request = json_app_secret_grant.build(CREDS, "rt-old")
    assert request.url == "https://ads.example/refresh/"
    assert request.json == {"app_id": "1790000001", "secret": "sandbox-ads-secret",
                            "grant_type": "refresh_token", "refresh_token": "rt-old"}
    assert request.form is None
    assert "sandbox-ads-secret" not in repr(request) and "sandbox-ads-secret" not in repr(CREDS)
    assert "rt-old" not in repr(request)


def test_code_envelope_answer_becomes_a_pair_with_declared_lifetimes_when_omitted():
    pair = ADS.token_pair(200, _ok(expires_in=86400, refresh_token_expires_in=2592000), NOW)
    assert (pair.access_token, pair.refresh_token) == ("at-1", "rt-1")
    assert pair.expires_at == NOW + timedelta(days=1)
    assert pair.refresh_expires_at == NOW + timedelta(days=30)
    bare = ADS.token_pair(200, _ok(), NOW)  # no lifetimes in the answer: the declaration's
    assert bare.expires_at == NOW + timedelta(seconds=86400)
    assert bare.refresh_expires_at == NOW + timedelta(seconds=30 * 86400)
    assert "at-1" not in repr(parse_code_envelope(200, _ok()))


@pytest.mark.parametrize(("status", "body", "kind", "code"), [
    (200, {"code": 40107, "message": "refresh_token invalid", "data": {}}, ErrorClass.GRANT_INVALID, 40107),
    (200, {"code": 40103, "message": "refresh_token expired", "data": {}}, ErrorClass.GRANT_INVALID, 40103),
    (200, {"code": 40001, "message": "app_id or secret invalid"}, ErrorClass.OTHER, 40001),
    (200, {"code": 40002, "message": "missing required field(s)"}, ErrorClass.OTHER, 40002),
    (200, {"code": 40100, "message": "too many requests"}, ErrorClass.TRANSIENT, 40100),
    (429, {"code": 40100, "message": "too many requests"}, ErrorClass.TRANSIENT, 40100),
    (500, {"code": 50000, "message": "internal error"}, ErrorClass.TRANSIENT, 50000),
    (502, None, ErrorClass.TRANSIENT, None),  # a gateway's HTML page
    (503, "Service Unavailable", ErrorClass.TRANSIENT, None),
    (200, None, ErrorClass.OTHER, None),  # 200 but not JSON
    (200, {"code": 0, "message": "OK", "data": {}}, ErrorClass.OTHER, None),  # no access token
    (404, {"message": "not found"}, ErrorClass.OTHER, None),
])
def test_every_ads_style_error_is_classified(status, body, kind, code):
    with pytest.raises(OAuthError) as caught:
        ADS.token_pair(status, body, NOW)
    assert (caught.value.kind, caught.value.code) == (kind, code)


def test_standard_grant_is_built_with_authlib_either_way_of_client_authentication():
    post = StandardGrant().build(CREDS, "rt/old+1")
    form = parse_qs(post.form)
    assert form == {"grant_type": ["refresh_token"], "refresh_token": ["rt/old+1"],
                    "client_id": ["1790000001"], "client_secret": ["sandbox-ads-secret"]}
    assert post.headers["Content-Type"] == "application/x-www-form-urlencoded" and post.json is None
    basic = StandardGrant(auth_method="client_secret_basic", scope="reports").build(CREDS, "rt-old")
    assert parse_qs(basic.form) == {"grant_type": ["refresh_token"], "refresh_token": ["rt-old"],
                                    "scope": ["reports"]}
    scheme, encoded = basic.headers["Authorization"].split()
    assert scheme == "Basic" and base64.b64decode(encoded).decode() == "1790000001:sandbox-ads-secret"
    assert "sandbox-ads-secret" not in repr(basic) and encoded not in repr(basic)


@pytest.mark.parametrize(("status", "body", "kind"), [
    (400, {"error": "invalid_grant", "error_description": "refresh token revoked"}, ErrorClass.GRANT_INVALID),
    (401, {"error": "invalid_client", "error_description": "client authentication failed"}, ErrorClass.OTHER),
    (400, {"error": "invalid_request"}, ErrorClass.OTHER),
    (400, {"error": "unsupported_grant_type"}, ErrorClass.OTHER),
    (429, {"error": "temporarily_unavailable"}, ErrorClass.TRANSIENT),
    (503, {"error": "temporarily_unavailable"}, ErrorClass.TRANSIENT),
    (400, {"error": "temporarily_unavailable"}, ErrorClass.TRANSIENT),
    (500, {"error": "server_error"}, ErrorClass.TRANSIENT),
    (502, None, ErrorClass.TRANSIENT),
    (200, {"token_type": "Bearer"}, ErrorClass.OTHER),  # no access token
    (200, ["not", "an", "object"], ErrorClass.OTHER),
])
def test_every_standard_error_is_classified(status, body, kind):
    with pytest.raises(OAuthError) as caught:
        ADS_OAUTH2.token_pair(status, body, NOW)
    assert caught.value.kind is kind


def test_standard_answer_becomes_a_pair():
    pair = ADS_OAUTH2.token_pair(200, {"access_token": "a", "token_type": "Bearer", "expires_in": 600,
                                       "refresh_token": "r", "scope": "reports"}, NOW)
    assert (pair.access_token, pair.refresh_token, pair.scopes) == ("a", "r", "reports")
    assert pair.expires_at == NOW + timedelta(seconds=600) and pair.refresh_expires_at is None
    kept = ADS_OAUTH2.token_pair(200, {"access_token": "a"}, NOW)  # §6: a new refresh token MAY be issued
    assert kept.refresh_token is None and kept.expires_at == NOW + timedelta(days=1)


def test_a_provider_supplies_its_own_body_and_parse():
    def build(creds, refresh_token):
        return TokenRequest(url=creds.token_url + "?v=2", json={"token": refresh_token})

    def parse(status, body):
        from bot.tokens.providers import Answer

        if body.get("ok"):
            return Answer(access_token=body["at"], refresh_token=body["rt"], expires_in=body["ttl"])
        return Answer(code=body["errno"], message=body["why"])

    odd = Provider("odd", token_url="https://odd.example/t", grant=NonStandardGrant(build, parse),
                   grant_invalid_codes=[7], transient_codes=[9])
    assert odd.grant.build(CREDS, "r").json == {"token": "r"}
    assert odd.token_pair(200, {"ok": True, "at": "a", "rt": "r2", "ttl": 5}, NOW).expires_at == \
        NOW + timedelta(seconds=5)
    for errno, kind in ((7, ErrorClass.GRANT_INVALID), (9, ErrorClass.TRANSIENT), (1, ErrorClass.OTHER)):
        with pytest.raises(OAuthError) as caught:
            odd.token_pair(200, {"errno": errno, "why": "no"}, NOW)
        assert caught.value.kind is kind


def test_declarations_are_checked():
    for name in ("feishu", "Ads", "", "a" * 65, "ads platform"):
        with pytest.raises(ValueError, match="provider name"):
            Provider(name, token_url="https://x")
    assert ADS.access_rejected(40102) and not ADS.access_rejected(40105) and not ADS.access_rejected(None)
    assert ADS.credentials("id", "s", "", "").token_url == "https://ads.invalid/open_api/oauth2/refresh_token/"
    assert ADS.credentials("id", "s", "http://127.0.0.1:1/t", "http://127.0.0.1:1").token_url == \
        "http://127.0.0.1:1/t"  # the settings' override
    with pytest.raises(ValueError, match="set token_url"):
        Provider("bare").credentials("id", "s")
    relative = Provider("rel", token_url="/open_api/oauth2/refresh_token/", api_url="https://ads.example")
    assert relative.credentials("id", "s").token_url == "https://ads.example/open_api/oauth2/refresh_token/"
    assert relative.credentials("id", "s", api_url="http://127.0.0.1:5/ads/").token_url == \
        "http://127.0.0.1:5/ads/open_api/oauth2/refresh_token/"  # the sandbox, by its API URL alone
    with pytest.raises(ValueError, match="set token_url"):
        Provider("rel2", token_url="/t").credentials("id", "s")


def test_grant_kinds_keep_feishus_keys_and_name_the_fix():
    assert FEISHU_KIND.lock_key("ou_1") == "fb:lock:user-token:ou_1"  # as before: rolling deploys
    assert FEISHU_KIND.pending_key("ou_1", 3) == "fb:token-pending:ou_1:3"
    ads = GrantKind("ads")
    assert ads.lock_key("default") == "fb:lock:provider-token:ads:default"
    assert ads.hint("default") == "run `feishu-bridge auth provider-login ads`"
    assert ads.hint("acct-2") == "run `feishu-bridge auth provider-login ads --subject acct-2`"

    class Row:
        subject, display_name, created_at = "default", "", NOW

    key, text = ads.reauth_alert(Row(), "refresh_token invalid")
    assert key.startswith("token:ads:default:reauth_required:")
    assert "feishu-bridge auth provider-login ads" in text
    assert FEISHU_KIND.reauth_alert(Row(), "x")[0].startswith("token:default:reauth_required:")


# -- settings -------------------------------------------------------------------------------------


def test_oauth_providers_come_from_one_json_setting(monkeypatch):
    monkeypatch.setenv("OAUTH_PROVIDERS", json.dumps({"ads": {
        "client_id": "1790000001", "client_secret": "sandbox-ads-secret",
        "token_url": "http://127.0.0.1:9/ads/open_api/oauth2/refresh_token/", "api_url": "http://127.0.0.1:9/ads"}}))
    settings = Settings(_env_file=None)
    ads = settings.oauth_providers["ads"]
    assert ads.client_id == "1790000001" and ads.api_url == "http://127.0.0.1:9/ads"
    assert ads.client_secret.get_secret_value() == "sandbox-ads-secret"
    assert "sandbox-ads-secret" not in repr(settings)
    assert "sandbox-ads-secret" not in str(settings.model_dump())
    assert "sandbox-ads-secret" in settings.secret_values()  # scrubbed from CLI lines and logs
    assert settings.pipeline_modules == "bot.pipelines.examples,pipelines"
    monkeypatch.setenv("OAUTH_PROVIDERS", "")
    assert Settings(_env_file=None).oauth_providers == {}


@pytest.mark.parametrize(("value", "expected"), [
    ('{"ads": {"client_id": "1", "client_secret": "sandbox-ads-secret"', "not valid JSON"),
    ('["ads"]', "expected a JSON object"),
    ('{"ads": {"client_secret": "sandbox-ads-secret"}}', "OAUTH_PROVIDERS.ADS.CLIENT_ID: Field required"),
    ('{"ads": {"client_id": "1", "client_secret": "sandbox-ads-secret", "tokn_url": "x"}}',
     "OAUTH_PROVIDERS.ADS.TOKN_URL: Extra inputs"),
    ('{"feishu": {"client_id": "1", "client_secret": "sandbox-ads-secret"}}', "not 'feishu'"),
])
def test_a_bad_oauth_providers_is_one_clear_line(monkeypatch, value, expected):
    monkeypatch.setenv("OAUTH_PROVIDERS", value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    line = explain(caught.value, None)
    assert line.startswith("invalid setting OAUTH_PROVIDERS") and expected in line
    assert "\n" not in line and "sandbox-ads-secret" not in line
    result = CliRunner().invoke(cli, ["config", "check"],
                                env={"OAUTH_PROVIDERS": value})
    assert result.exit_code == 1
    [error] = [line for line in result.output.splitlines() if line.strip()]
    assert error.startswith("error: invalid setting OAUTH_PROVIDERS") and "sandbox-ads-secret" not in error


def test_declarations_load_from_the_allow_listed_modules(tmp_path, monkeypatch):
    assert declared_providers("bot.pipelines.examples_missing,no_such_pipelines") == {}
    assert set(declared_providers("no_such_module,tests.provider_decls")) == {"ads", "ads-oauth2"}
    assert declared_providers("tests.provider_decls,tests.provider_decls")["ads"] is ADS  # listed twice
    (tmp_path / "dup_decls.py").write_text(
        "from bot.tokens.providers import Provider\nPROVIDERS = [Provider('ads', token_url='https://x')]\n")
    (tmp_path / "bad_decls.py").write_text("PROVIDERS = ['ads']\n")
    (tmp_path / "broken_decls.py").write_text("import no_such_dependency_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ProviderNotConfigured, match="declared twice"):
        declared_providers("tests.provider_decls,dup_decls")
    with pytest.raises(ProviderNotConfigured, match="must be a list"):
        declared_providers("bad_decls")
    with pytest.raises(ModuleNotFoundError):  # a module that exists but fails is not skipped
        declared_providers("broken_decls")


# -- the store, with an injected transport ------------------------------------------------------


class FakeAds:
    """The ads platform's refresh in memory: single-use, rotating refresh tokens."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: set[str] = set()
        self.refreshes = 0
        self.faults: list[tuple[int, object]] = []  # answers to give first

    def grant(self) -> str:
        token = "ads-rt-" + secrets.token_hex(8)
        self.live.add(token)
        return token

    def __call__(self, request: TokenRequest) -> tuple[int, object]:
        with self.lock:
            if self.faults:
                return self.faults.pop(0)
            body = request.json
            if (body["app_id"], body["secret"]) != ("1790000001", "sandbox-ads-secret"):
                return 200, {"code": 40001, "message": "app_id or secret invalid"}
            if body["refresh_token"] not in self.live:
                return 200, {"code": 40107, "message": "refresh_token invalid"}
            self.live.discard(body["refresh_token"])
            self.refreshes += 1
            return 200, _ok(access="ads-at-" + secrets.token_hex(8), refresh=self.grant(), expires_in=86400,
                            refresh_token_expires_in=2592000)


def _with_ads(settings, base_url="https://ads.invalid", secret="sandbox-ads-secret", **extra):
    providers = {"ads": ProviderCredentials(client_id="1790000001", client_secret=secret,
                                            api_url=f"{base_url}/ads")}  # the token URL under it
    providers.update(extra)
    return settings.model_copy(update={"oauth_providers": providers,
                                       "pipeline_modules": "tests.provider_decls"})


@pytest.fixture
def fake_ads(services):
    fake = FakeAds()
    tokens = ProviderTokens(services.engine, services.redis, services.secret_box,
                            _with_ads(services.settings),
                            post=fake, retry_wait=0.01)
    return fake, tokens


def _grant_row(services, provider="ads", subject="default"):
    return next(g for g in list_grants(services.engine, provider) if g.subject == subject)


def test_a_stored_refresh_token_is_spent_once_and_the_rotated_pair_kept_sealed(services, fake_ads):
    fake, tokens = fake_ads
    first = fake.grant()
    tokens.store_grant("ads", refresh_token=first)
    token = tokens.get_valid_token("ads")
    assert fake.refreshes == 1 and first not in fake.live
    assert tokens.get_valid_token("ads") == token and fake.refreshes == 1  # fresh: no second refresh
    row = _grant_row(services)
    assert row.provider == "ads" and row.status == "active" and row.generation == 2
    assert row.access_token.startswith("gAAAA") and token not in row.access_token
    assert services.secret_box.open(row.refresh_token) in fake.live  # the rotated one
    assert 23.9 < (row.expires_at - utcnow()).total_seconds() / 3600 <= 24
    assert 29.9 < (row.refresh_expires_at - utcnow()).days + 1 <= 30
    assert [h.outcome for h in tokens.history("ads", "default")] == ["refreshed", "authorized"]
    assert services.user_tokens.grants() == []  # Feishu's grants are Feishu's only


def test_a_rejected_token_is_refreshed_and_not_handed_out_again(services, fake_ads):
    fake, tokens = fake_ads
    tokens.store_grant("ads", refresh_token=fake.grant(), access_token="ads-at-still-valid-000",
                       expires_in=86400)
    assert tokens.get_valid_token("ads") == "ads-at-still-valid-000" and fake.refreshes == 0
    assert tokens.access_rejected("ads", 40102)
    new = tokens.get_valid_token("ads", rejected="ads-at-still-valid-000")
    assert new != "ads-at-still-valid-000" and fake.refreshes == 1
    assert tokens.get_valid_token("ads", rejected="ads-at-still-valid-000") == new  # someone else's rejection
    assert fake.refreshes == 1


def test_transient_refresh_errors_are_retried_and_other_errors_name_the_setting(services, fake_ads):
    fake, tokens = fake_ads
    tokens.store_grant("ads", refresh_token=fake.grant())
    fake.faults = [(500, {"code": 50000, "message": "internal error"}), (429, None)]
    assert tokens.get_valid_token("ads") and fake.refreshes == 1

    wrong = ProviderTokens(services.engine, services.redis, services.secret_box,
                           _with_ads(services.settings, secret="not-the-secret"), post=fake, retry_wait=0.01)
    assert wrong.refresh("ads") == tokens.get_valid_token("ads")  # failed, but the token still works
    tokens.store_grant("ads", refresh_token=fake.grant())  # no access token at all
    with pytest.raises(TokenUnavailable, match="check ads's client_id and client_secret in OAUTH_PROVIDERS"):
        wrong.refresh("ads")
    row = _grant_row(services)
    assert row.status == "active" and "40001" in row.last_error  # not the grant's fault: kept
    assert tokens.history("ads", "default")[0].outcome == "error"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_refresh_lock_is_held_through_every_retry_of_a_slow_provider(services, fake_ads, caplog):
    """Three slow attempts outlast the lock's TTL: the lock is renewed before each, so no other
    process can spend the same refresh token meanwhile (the old code let it expire after 2 s)."""
    fake, _ = fake_ads
    settings = _with_ads(services.settings).model_copy(update={"token_lock_ttl_seconds": 2})
    held: list[bool] = []
    key = GrantKind("ads", "ads").lock_key("default")

    def slow(request: TokenRequest) -> tuple[int, object]:
        held.append(bool(services.redis.exists(key)))
        time.sleep(1.2)
        if len(held) < 3:
            return 500, {"code": 50000, "message": "internal error"}
        return fake(request)

    tokens = ProviderTokens(services.engine, services.redis, services.secret_box, settings, post=slow,
                            retry_wait=0.01)
    tokens.store_grant("ads", refresh_token=fake.grant())
    assert tokens.get_valid_token("ads") and fake.refreshes == 1
    assert held == [True, True, True]
    assert "outlived its lock" not in caplog.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_one_attempt_slower_than_the_lock_ttl_keeps_the_lock(services, fake_ads, caplog):
    """A single exchange outlasting TOKEN_LOCK_TTL_SECONDS (Feishu's own can take 2 × 30 s): the
    lock is renewed in the background, so it is still ours when the answer comes."""
    fake, _ = fake_ads
    settings = _with_ads(services.settings).model_copy(update={"token_lock_ttl_seconds": 1})
    key = GrantKind("ads", "ads").lock_key("default")
    held_after: list[bool] = []

    def slow(request: TokenRequest) -> tuple[int, object]:
        time.sleep(2.5)
        held_after.append(bool(services.redis.exists(key)))
        return fake(request)

    tokens = ProviderTokens(services.engine, services.redis, services.secret_box, settings, post=slow)
    tokens.store_grant("ads", refresh_token=fake.grant())
    assert tokens.get_valid_token("ads") and fake.refreshes == 1
    assert held_after == [True]
    assert "outlived its lock" not in caplog.text
    assert not services.redis.exists(key)  # released


def test_unconfigured_providers_say_which_setting(services):
    bare = ProviderTokens(services.engine, services.redis, services.secret_box,
                          services.settings.model_copy(update={"pipeline_modules": "tests.provider_decls"}))
    with pytest.raises(ProviderNotConfigured, match="ads has no credentials: add it to OAUTH_PROVIDERS"):
        bare.get_valid_token("ads")
    with pytest.raises(ProviderNotConfigured, match="unknown provider 'nope'"):
        bare.get_valid_token("nope")
    undeclared = ProviderTokens(services.engine, services.redis, services.secret_box,
                                _with_ads(services.settings).model_copy(
                                    update={"pipeline_modules": "x_none"}))
    with pytest.raises(ProviderNotConfigured, match="no module in PIPELINE_MODULES"):
        undeclared.get_valid_token("ads")


def test_history_rows_belong_to_their_provider(services, fake_ads):
    fake, tokens = fake_ads
    tokens.store_grant("ads", "acct-1", refresh_token=fake.grant())
    tokens.store_grant("ads", "acct-2", refresh_token=fake.grant())
    with pytest.raises(NotAuthorized, match="several ads grants"):
        tokens.get_valid_token("ads")
    tokens.get_valid_token("ads", "acct-2")
    with services.sessions() as session:
        rows = session.execute(select(TokenRefresh.provider, TokenRefresh.subject, TokenRefresh.outcome)
                               .order_by(TokenRefresh.id)).all()
    assert [tuple(r) for r in rows] == [("ads", "acct-1", "authorized"), ("ads", "acct-2", "authorized"),
                                        ("ads", "acct-2", "refreshed")]
    assert tokens.logout("ads", "acct-1") == "acct-1"
    assert [g.subject for g in tokens.grants()] == ["acct-2"]
    with pytest.raises(NotAuthorized, match="provider-login ads --subject acct-1"):
        tokens.get_valid_token("ads", "acct-1")


# -- against the sandbox's ads platform -----------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
ADS_REFRESH_PATH = "/ads/open_api/oauth2/refresh_token/"


@pytest.fixture
def ads(settings, redis_conn, sandbox):
    """Services whose settings name the sandbox's ads platform (both front doors), installed for
    jobs; the base URL."""
    base_url, _ = sandbox
    oauth2 = ProviderCredentials(client_id="1790000001", client_secret="sandbox-ads-secret",
                                 token_url=f"{base_url}/ads/oauth2/token", api_url=f"{base_url}/ads")
    built = build_services(_with_ads(settings, base_url, **{"ads-oauth2": oauth2}))
    init_schema(built.engine)
    install(built)
    built.provider_tokens._retry_wait = 0.01
    yield built, base_url
    built.close()


def _grant(base_url: str, **lifetimes) -> dict:
    """A fresh grant, as if the user authorised the app in the platform's console."""
    return httpx.post(f"{base_url}/sandbox/ads/grant", json=lifetimes).json()


def _store(services, grant: dict, provider: str = "ads", expires_in: int | None = None) -> None:
    services.provider_tokens.store_grant(
        provider, refresh_token=grant["refresh_token"], access_token=grant["access_token"],
        expires_in=expires_in or grant["expires_in"], refresh_expires_in=grant["refresh_token_expires_in"])


def _refreshes(base_url: str) -> int:
    return httpx.get(f"{base_url}/sandbox/ads/stats").json()["refreshes"]


def _advertisers(base_url: str, token: str) -> int:
    answer = httpx.get(f"{base_url}/ads/open_api/v1/advertisers/", headers={"Access-Token": token})
    return answer.json()["code"]


def _env(services, **extra) -> dict[str, str]:
    settings = services.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEISHU_", "TOKEN_", "OAUTH_"))}
    env.update({
        "DATABASE_URL": settings.effective_database_url, "REDIS_URL": settings.redis_url,
        "VAR_DIR": str(settings.var_dir), "FEISHU_BASE_URL": settings.feishu_base_url,
        "FEISHU_APP_ID": settings.feishu_app_id,
        "FEISHU_APP_SECRET": settings.feishu_app_secret.get_secret_value(),
        "PIPELINE_MODULES": settings.pipeline_modules, "LOG_LEVEL": "WARNING",
        "OAUTH_PROVIDERS": json.dumps({
            name: {**c.model_dump(), "client_secret": c.client_secret.get_secret_value()}
            for name, c in settings.oauth_providers.items()}),
    })
    env.update(extra)
    return env


def test_an_expired_access_token_is_refreshed_once_and_the_refresh_token_rotated(ads):
    services, base_url = ads
    tokens = services.provider_tokens
    grant = _grant(base_url)
    _store(services, grant)
    token = tokens.get_valid_token("ads")
    assert token == grant["access_token"] and _advertisers(base_url, token) == 0
    assert tokens.api_url("ads") == f"{base_url}/ads"

    httpx.post(f"{base_url}/sandbox/ads/expire")  # the platform says expired; our database does not
    code = _advertisers(base_url, token)
    assert code == 40102 and tokens.access_rejected("ads", code)
    new = tokens.get_valid_token("ads", rejected=token)
    assert new != token and _refreshes(base_url) == 1 and _advertisers(base_url, new) == 0
    assert tokens.get_valid_token("ads", rejected=token) == new and _refreshes(base_url) == 1

    row = _grant_row(services)
    stored_refresh = services.secret_box.open(row.refresh_token)
    assert stored_refresh != grant["refresh_token"] and row.generation == 2
    spent = httpx.post(base_url + ADS_REFRESH_PATH, json={  # single-use: the old one is spent
        "app_id": "1790000001", "secret": "sandbox-ads-secret", "grant_type": "refresh_token",
        "refresh_token": grant["refresh_token"]}).json()
    assert spent["code"] == 40107
    [latest, login] = tokens.history("ads", "default", limit=2)
    assert (latest.outcome, latest.cause, login.outcome) == ("refreshed", "on_demand", "authorized")


def _callers(services, provider: str, threads: int, start_at: float, rejected: str | None = None):
    from tests.test_token_processes import _stderr_log

    argv = [sys.executable, "-m", "tests.token_callers", str(threads), str(start_at), provider]
    return processes.spawn(argv + ([rejected] if rejected else []), cwd=ROOT, env=_env(services),
                           stdout=subprocess.PIPE, stderr=_stderr_log(services), text=True)


def _round(services, rejected: str | None = None) -> list[str]:
    start_at = time.time() + 4  # after every process has started
    procs = [_callers(services, "ads", 4, start_at, rejected) for _ in range(4)]
    outputs = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert [e for o in outputs for e in o["errors"]] == []
    return [t for o in outputs for t in o["tokens"]]


def test_16_callers_in_4_processes_cause_one_refresh(ads):
    services, base_url = ads
    _store(services, _grant(base_url), expires_in=60)  # about to expire: everyone wants a refresh
    tokens = _round(services)
    assert len(tokens) == 16 and len(set(tokens)) == 1
    assert _refreshes(base_url) == 1
    assert services.provider_tokens.get_valid_token("ads") == tokens[0]

    # the API refuses the token (40102): every caller passes it back as rejected — one refresh more
    httpx.post(f"{base_url}/sandbox/ads/expire")
    again = _round(services, rejected=tokens[0])
    assert len(again) == 16 and len(set(again)) == 1 and again[0] != tokens[0]
    assert _refreshes(base_url) == 2 and _advertisers(base_url, again[0]) == 0
    assert [h.outcome for h in services.provider_tokens.history("ads", "default")] == \
        ["refreshed", "refreshed", "authorized"]


@pytest.mark.parametrize("loss", ["revoke", "expire"])
def test_a_lost_grant_needs_login_alerts_once_and_the_cli_says_so(ads, loss):
    from jobs.tokens import refresh_due_tokens

    services, base_url = ads
    services.settings.admin_chat_id = "oc_admins"
    _store(services, _grant(base_url), expires_in=60)
    if loss == "revoke":
        httpx.post(f"{base_url}/sandbox/ads/revoke")
    else:
        httpx.post(f"{base_url}/sandbox/ads/refresh-expires-in", json={"seconds": -1})
    with pytest.raises(ReauthRequired, match="run `feishu-bridge auth provider-login ads`"):
        services.provider_tokens.get_valid_token("ads")
    with pytest.raises(ReauthRequired, match="feishu-bridge auth provider-login ads"):
        services.provider_tokens.get_valid_token("ads")  # no second refresh, no second alert
    assert _grant_row(services).status == "reauth_required"
    [failed, _] = services.provider_tokens.history("ads", "default", limit=2)
    assert (failed.outcome, failed.error_code) == ("permanent_error", 40107 if loss == "revoke" else 40103)
    assert refresh_due_tokens()["alerts_sent"] == 1
    refresh_due_tokens()  # the condition persists: still one alert
    with services.sessions() as session:
        [alert] = session.scalars(select(Alert)).all()
    assert alert.kind == "token_reauth_required" and alert.sent_at is not None
    assert "feishu-bridge auth provider-login ads" in alert.message
    result = CliRunner().invoke(cli,
                                ["auth", "refresh", "--provider", "ads"], env=_env(services))
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = [x for x in result.output.splitlines() if x.strip()]
    assert "feishu-bridge auth provider-login ads" in line


def test_a_refresh_token_ending_soon_alerts_once(ads, sandbox):
    from jobs.tokens import refresh_due_tokens

    services, base_url = ads
    _, state = sandbox
    services.settings.admin_chat_id = "oc_admins"
    _store(services, _grant(base_url, refresh_expires_in=2 * 86400))
    counts = refresh_due_tokens()
    assert counts["checked"] == 1 and counts["alerts_sent"] == 1
    assert refresh_due_tokens()["alerts_sent"] == 0
    [message] = [m for m in state.bot_sent if m.chat_id == "oc_admins"]
    text = json.loads(message.content)["text"]
    assert "刷新令牌将在 2.0 天后过期" in text and "feishu-bridge auth provider-login ads" in text
    assert _refreshes(base_url) == 0  # the access token was fresh: nothing to refresh


def test_upkeep_refreshes_provider_grants_ahead_of_expiry(ads):
    from jobs.tokens import refresh_due_tokens

    services, base_url = ads
    _store(services, _grant(base_url), expires_in=1200)  # inside the proactive margin (30 min)
    counts = refresh_due_tokens()
    assert (counts["checked"], counts["refreshed_or_fresh"], counts["failed"]) == (1, 1, 0)
    assert _refreshes(base_url) == 1
    [latest, _] = services.provider_tokens.history("ads", "default", limit=2)
    assert (latest.cause, latest.outcome) == ("proactive", "refreshed")


def test_the_standard_grant_refreshes_through_rfc6749(ads):
    services, base_url = ads
    tokens = services.provider_tokens
    _store(services, _grant(base_url), provider="ads-oauth2", expires_in=60)
    token = tokens.get_valid_token("ads-oauth2")
    assert _refreshes(base_url) == 1 and _advertisers(base_url, token) == 0
    assert _grant_row(services, "ads-oauth2").refresh_expires_at is not None
    httpx.post(f"{base_url}/sandbox/ads/revoke")
    with pytest.raises(ReauthRequired, match=r"Ads \(OAuth2\) refused.*provider-login ads-oauth2"):
        tokens.refresh("ads-oauth2")


def test_auth_cli_provider_login_status_refresh_logout(ads):
    from tests.oauth_helpers import authorize

    services, base_url = ads
    env = _env(services)
    grant = _grant(base_url)
    stored = CliRunner().invoke(cli, ["auth", "provider-login", "ads", "--refresh-token-stdin"],
                                input=grant["refresh_token"] + "\n", env=env)
    assert stored.exit_code == 0, stored.output
    assert "Stored and verified the ads grant (default)" in stored.output
    assert _refreshes(base_url) == 1  # verified by a refresh: the stored pair is the rotated one
    row = _grant_row(services)
    assert services.secret_box.open(row.refresh_token) != grant["refresh_token"]

    prompted = CliRunner().invoke(cli, ["auth", "provider-login", "ads", "--subject", "acct-2"],
                                  input=_grant(base_url)["refresh_token"] + "\n", env=env)
    assert prompted.exit_code == 0, prompted.output
    assert "ads-sandbox-rt" not in prompted.output  # the prompt hides what was typed

    authorize(services)  # and a Feishu user
    status = CliRunner().invoke(cli, ["auth", "status", "--json"], env=env)
    grants = json.loads(status.output)["grants"]
    assert [(g["provider"], g["subject"], g["status"]) for g in grants] == [
        ("feishu", DEFAULT_USER_OPEN_ID, "active"),
        ("ads", "default", "active"), ("ads", "acct-2", "active")]
    assert 23.9 < grants[1]["access_hours_left"] <= 24 and grants[1]["refresh_hours_left"] > 700
    assert [h["outcome"] for h in grants[1]["history"]] == ["refreshed", "authorized"]
    text = CliRunner().invoke(cli, ["auth", "status"], env=env).output
    assert "ads · default (default) — active" in text
    for output in (status.output, text):
        assert "ads-sandbox-at" not in output and "ads-sandbox-rt" not in output
        assert "sandbox-ads-secret" not in output

    refreshed = CliRunner().invoke(cli, ["auth", "refresh", "--provider", "ads", "--subject", "acct-2"],
                                   env=env)
    assert refreshed.exit_code == 0 and "Refreshed" in refreshed.output and _refreshes(base_url) == 3
    ambiguous = CliRunner().invoke(cli, ["auth", "refresh", "--provider", "ads"], env=env)
    assert ambiguous.exit_code == 1 and "several ads grants" in ambiguous.output
    gone = CliRunner().invoke(cli, ["auth", "logout", "--provider", "ads", "--subject", "acct-2"], env=env)
    assert gone.exit_code == 0 and "Logged out acct-2 (ads)" in gone.output
    assert [g.subject for g in services.provider_tokens.grants()] == ["default"]
    assert len(services.user_tokens.grants()) == 1  # Feishu's grant untouched


def test_provider_login_with_a_dead_refresh_token_is_one_line_and_no_alert(ads):
    services, _ = ads
    result = CliRunner().invoke(cli, ["auth", "provider-login", "ads", "--refresh-token-stdin"],
                                input="ads-rt-that-was-never-issued\n", env=_env(services))
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = [x for x in result.output.splitlines() if x.strip()]
    assert "refresh_token invalid" in line and "feishu-bridge auth provider-login ads" in line
    with services.sessions() as session:
        assert session.scalars(select(Alert)).all() == []  # whoever logs in sees it; no alert
    unknown = CliRunner().invoke(cli, ["auth", "provider-login", "nope", "--refresh-token-stdin"],
                                 input="x\n", env=_env(services))
    assert unknown.exit_code == 1 and "unknown provider 'nope'" in unknown.output
