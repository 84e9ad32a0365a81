"""The token manager against the sandbox: login, refresh once, retry on expiry, reauth alerts."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from bot import alerts
from bot.cli.main import main as cli
from bot.intake.processing import process_receipt
from bot.models import Alert, OAuthToken, TokenRefresh, utcnow
from bot.tokens.user_tokens import ReauthRequired
from jobs.alerts import deliver_alerts
from jobs.tokens import refresh_due_tokens
from sandbox.state import DEFAULT_USER_NAME, DEFAULT_USER_OPEN_ID
from tests.oauth_helpers import admin_client, authorize, expire_in


def _user_info(services):
    from lark_oapi.api.authen.v1 import GetUserInfoRequest

    return services.feishu.call(
        "authen.v1.user_info.get",
        lambda client, option: client.authen.v1.user_info.get(GetUserInfoRequest.builder().build(), option),
        as_user=DEFAULT_USER_OPEN_ID,
    )


def _refreshes(state) -> int:
    return sum(1 for r in state.refresh_log if r["grant_type"] == "refresh_token")


def _row(services) -> OAuthToken:
    with services.sessions() as session:
        return session.scalar(select(OAuthToken).where(OAuthToken.subject == DEFAULT_USER_OPEN_ID))


def test_login_stores_an_encrypted_grant(services, sandbox):
    user = authorize(services)
    assert (user.subject, user.name) == (DEFAULT_USER_OPEN_ID, DEFAULT_USER_NAME)
    row = _row(services)
    token = services.user_tokens.get_valid_user_token()
    assert token.startswith("u-sandbox")
    assert token not in row.access_token and row.access_token.startswith("gAAAA")  # Fernet
    assert row.refresh_token and "ur-sandbox" not in row.refresh_token
    assert "offline_access" in row.scopes
    assert _user_info(services).data.open_id == DEFAULT_USER_OPEN_ID
    assert _refreshes(sandbox[1]) == 0  # fresh token: no refresh


def test_callback_refuses_unknown_state_with_a_reason(client, services):
    response = client.get("/oauth/callback?code=abc&state=forged")
    assert response.status_code == 400
    assert "unknown or expired login state" in response.get_data(as_text=True)


def test_callback_through_the_web_app(app, services, sandbox):
    client = admin_client(app)
    login = client.get("/oauth/login")
    assert login.status_code == 302
    approved = httpx.get(login.headers["location"], follow_redirects=False)
    callback = approved.headers["location"].split("/oauth/callback", 1)[1]
    response = client.get("/oauth/callback" + callback)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert DEFAULT_USER_NAME in response.get_data(as_text=True)
    assert _row(services).status == "active"


def test_token_near_expiry_is_refreshed_and_rotated(services, sandbox):
    _, state = sandbox
    authorize(services)
    old = services.user_tokens.get_valid_user_token()
    old_generation = _row(services).generation
    expire_in(services, DEFAULT_USER_OPEN_ID, 120)  # inside the 5-minute margin
    new = services.user_tokens.get_valid_user_token()
    assert new != old and _refreshes(state) == 1
    row = _row(services)
    assert row.generation == old_generation + 1 and row.last_refresh is not None
    assert services.user_tokens.get_valid_user_token() == new  # no second refresh
    assert _refreshes(state) == 1
    [latest] = services.user_tokens.history(DEFAULT_USER_OPEN_ID, limit=1)
    assert (latest.outcome, latest.cause) == ("refreshed", "on_demand")
    assert latest.access_remaining_seconds > 7000


def test_expired_answer_refreshes_once_and_retries_once(services, sandbox):
    base_url, state = sandbox
    authorize(services)
    httpx.post(f"{base_url}/sandbox/oauth/expire", json={})  # Feishu says expired; our DB does not
    assert _user_info(services).data.open_id == DEFAULT_USER_OPEN_ID
    assert _refreshes(state) == 1
    calls = [c for c in state.api_calls if c["path"].endswith("/user_info")]
    assert [c["code"] for c in calls] == [0, 99991677, 0]  # callback's, the rejected one, the retry


def test_rejected_tenant_token_is_fetched_again_once(services, sandbox):
    base_url, state = sandbox
    message = state.add_user_message("oc_x", "ou_x", json.dumps({"text": "/ping"}))
    from bot.im import reply_text

    reply_text(services.feishu, message.message_id, "warm-up")  # caches a tenant token in Redis
    httpx.post(f"{base_url}/sandbox/tokens/expire")
    before = state.token_requests
    reply_text(services.feishu, message.message_id, "again")
    assert state.token_requests == before + 1
    codes = [c["code"] for c in state.api_calls if c["path"].endswith("/reply")]
    assert codes[-2:] == [99991663, 0]


def test_transient_refresh_errors_are_retried(services, sandbox):
    _, state = sandbox
    authorize(services)
    state.faults.update({"refresh_server_errors": 2})
    expire_in(services, DEFAULT_USER_OPEN_ID, 60)
    services.user_tokens._retry_wait = 0.01
    token = services.user_tokens.get_valid_user_token()
    assert token and _refreshes(state) == 3 and _row(services).status == "active"


def test_transient_failure_keeps_the_grant_and_the_still_valid_token(services, sandbox):
    _, state = sandbox
    authorize(services)
    old = services.user_tokens.get_valid_user_token()
    state.faults.update({"refresh_server_errors": 5})
    expire_in(services, DEFAULT_USER_OPEN_ID, 60)
    services.user_tokens._retry_wait = 0.01
    assert services.user_tokens.get_valid_user_token() == old  # 60 s left: keep working
    row = _row(services)
    assert row.status == "active" and "20050" in row.last_error
    [latest] = services.user_tokens.history(DEFAULT_USER_OPEN_ID, limit=1)
    assert latest.outcome == "transient_error" and latest.error_code == 20050


def test_revoked_grant_needs_login_alerts_once_and_the_cli_says_so(services, sandbox, tmp_path, monkeypatch):
    base_url, state = sandbox
    services.settings.admin_chat_id = "oc_admins"
    authorize(services)
    httpx.post(f"{base_url}/sandbox/oauth/revoke", json={})
    expire_in(services, DEFAULT_USER_OPEN_ID, 60)
    with pytest.raises(ReauthRequired, match="feishu-bridge auth login"):
        services.user_tokens.get_valid_user_token()
    assert _row(services).status == "reauth_required"
    refresh_due_tokens()
    refresh_due_tokens()  # the condition persists: still one alert
    sent = [m for m in state.bot_sent if m.chat_id == "oc_admins"]
    assert len(sent) == 1 and "auth login" in json.loads(sent[0].content)["text"]
    with services.sessions() as session:
        [alert] = session.scalars(select(Alert)).all()
    assert alert.kind == "token_reauth_required" and alert.sent_at is not None

    env = {"DATABASE_URL": services.settings.effective_database_url, "REDIS_URL": services.settings.redis_url,
           "VAR_DIR": str(services.settings.var_dir), "FEISHU_BASE_URL": base_url,
           "FEISHU_APP_ID": services.settings.feishu_app_id,
           "FEISHU_APP_SECRET": services.settings.feishu_app_secret.get_secret_value()}
    result = CliRunner().invoke(cli, ["auth", "refresh"], env=env)
    assert result.exit_code == 1
    assert "feishu-bridge auth login" in result.output and "Traceback" not in result.output


def test_refresh_token_ending_soon_alerts_once(services, sandbox):
    _, state = sandbox
    services.settings.admin_chat_id = "oc_admins"
    authorize(services)
    with services.engine.begin() as conn:
        conn.execute(update(OAuthToken).values(refresh_expires_at=utcnow() + timedelta(days=2)))
    assert refresh_due_tokens()["alerts_sent"] == 1
    assert refresh_due_tokens()["alerts_sent"] == 0
    [message] = [m for m in state.bot_sent if m.chat_id == "oc_admins"]
    assert "刷新令牌将在" in json.loads(message.content)["text"]


def test_every_feishu_job_succeeds_with_expired_tokens(services, sandbox):
    """Each job type that calls Feishu, started with an expired user token in the database and
    tenant tokens the sandbox no longer accepts."""
    base_url, state = sandbox
    services.settings.admin_chat_id = "oc_admins"
    authorize(services)
    expire_in(services, DEFAULT_USER_OPEN_ID, -3600)  # expired an hour ago
    from bot.im import reply_text

    message = state.add_user_message("oc_x", "ou_x", json.dumps({"text": "/ping"}))
    reply_text(services.feishu, message.message_id, "warm-up")
    httpx.post(f"{base_url}/sandbox/tokens/expire")
    alerts.raise_alert(services.engine, key="test:1", kind="test", message="hello admins")

    # refresh_due_tokens (user token), then deliver_alerts (tenant token), also run inside it
    counts = refresh_due_tokens()
    assert counts["refreshed_or_fresh"] == 1 and counts["alerts_sent"] == 1
    alerts.raise_alert(services.engine, key="test:2", kind="test", message="hello again")
    httpx.post(f"{base_url}/sandbox/tokens/expire")
    assert deliver_alerts() == 1
    assert _row(services).expires_at > utcnow() + timedelta(hours=1)
    # process_events → the /ping handler's reply (tenant token)
    from bot.intake import receipts
    from bot.intake.parse import ParsedEvent
    from tests.helpers import sender, text_message_event

    httpx.post(f"{base_url}/sandbox/tokens/expire")
    doc = text_message_event(sender(), "/ping", event_id="ev-exp", message_id=message.message_id)
    receipt_id = receipts.record(services.engine, ParsedEvent("ev-exp", "im.message.receive_v1", "2.0", doc))
    assert process_receipt(services, receipt_id) == "ping: ok"
    # sync_cache_source: a bitable read as the user whose token expired
    from bot.caches import store
    from bot.caches.sources import parse_source
    from jobs.caches import sync_cache_source
    from sandbox.seed import QUALITY_NODE

    store.add_source(services.engine, "quality", QUALITY_NODE, parse_source(QUALITY_NODE), 3600,
                     as_user=DEFAULT_USER_OPEN_ID)
    httpx.post(f"{base_url}/sandbox/oauth/expire", json={})
    assert sync_cache_source("quality")["outcome"] == "synced"
    # apply_cache_changes and refresh_cache_schema: the cache's change jobs, also as that user
    from jobs.caches import apply_cache_changes, refresh_cache_schema
    from sandbox.seed import DEFECTS_TABLE

    source = store.get_source(services.engine, "quality")
    store.add_pending(services.engine, source.id, DEFECTS_TABLE, ["recDefect00000001"])
    httpx.post(f"{base_url}/sandbox/oauth/expire", json={})
    assert apply_cache_changes(source.id, DEFECTS_TABLE)["applied"] == 1
    httpx.post(f"{base_url}/sandbox/oauth/expire", json={})
    assert refresh_cache_schema(source.id, DEFECTS_TABLE) == 16
    # refresh_cache_formulas: the formula and lookup columns, re-read as that user
    from jobs.caches import refresh_cache_formulas

    httpx.post(f"{base_url}/sandbox/oauth/expire", json={})
    assert "api_calls" in refresh_cache_formulas(source.id, DEFECTS_TABLE)
    # poll_export_messages and download_export_file: the contract bot's chat, read as the user
    from datetime import datetime

    from bot.export import runner
    from bot.export.contract import Answer, Reply
    from bot.export.options import RunOptions
    from jobs.export import download_export_file, poll_export_messages
    from sandbox.contract import CONTRACT_CHAT_ID
    from sandbox.products.contract import complete_export

    services.settings.export_chat_id = CONTRACT_CHAT_ID
    services.settings.export_user = DEFAULT_USER_OPEN_ID
    run_id = runner.create_run(services.engine, datetime(2024, 6, 3), datetime(2024, 6, 5),
                               RunOptions())
    [window_id] = runner.plan(services.engine, run_id, sized=[]).ids[:1]
    runner.record_submission(services.engine, window_id, Reply(Answer.OK, 200, "ok"))
    complete_export(state, "exp-tokens", "2024-06-03", "2024-06-04", "")
    httpx.post(f"{base_url}/sandbox/oauth/expire", json={})
    assert poll_export_messages() == 1
    httpx.post(f"{base_url}/sandbox/oauth/expire", json={})
    assert download_export_file(1) == "matched"
    with services.sessions() as session:
        outcomes = list(session.scalars(select(TokenRefresh.outcome)))
    assert outcomes == ["authorized"] + ["refreshed"] * 7
    # refresh_chat_cards: a progress card patched with a tenant token the sandbox stopped accepting
    from bot.im import reply_card
    from bot.models import ChatCard
    from jobs.chat import refresh_chat_cards

    card = {"config": {"update_multi": True}, "elements": []}
    card_id = reply_card(services.feishu, message.message_id, card)
    with services.sessions() as session, session.begin():
        session.add(ChatCard(message_id=card_id, chat_id="oc_x", kind="export", ref_id=run_id, state="live",
                             updated_at=utcnow()))
    httpx.post(f"{base_url}/sandbox/tokens/expire")
    assert refresh_chat_cards() == 1
    assert state.messages[card_id].versions, "the card was not patched"
    # run_pipeline: the target table's fields and records read with a tenant token the sandbox
    # stopped accepting (a day with nothing to write)
    from datetime import date

    from bot.pipelines import runs as pipeline_runs
    from bot.pipelines import store as pipelines
    from jobs.pipelines import run_pipeline
    from sandbox.seed import PEOPLE_TABLE, QUALITY_APP

    services.settings.pipeline_modules = "tests.pipeline_helpers"
    pipelines.add(services, {"name": "people", "source": {"kind": "python",
                                                          "callable": "tests.pipeline_helpers:no_rows"},
                             "target": {"app_token": QUALITY_APP, "table_id": PEOPLE_TABLE},
                             "key": ["姓名", "入职日期"], "partition": "入职日期"})
    pipeline_run = pipeline_runs.create(services.engine, "people", [date(2030, 1, 1)], "manual")
    httpx.post(f"{base_url}/sandbox/tokens/expire")
    assert run_pipeline(pipeline_run) == "succeeded"


def _fail_updates(services, on: bool) -> None:
    """A real database refusal (a trigger), standing in for a database that went away."""
    pg = services.engine.dialect.name == "postgresql"
    with services.engine.begin() as conn:
        if on and pg:
            conn.exec_driver_sql("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                                 "RAISE EXCEPTION 'database refuses writes'; END $$ LANGUAGE plpgsql")
            conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE UPDATE ON oauth_tokens "
                                 "FOR EACH ROW EXECUTE FUNCTION refuse()")
        elif on:
            conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE UPDATE ON oauth_tokens "
                                 "BEGIN SELECT RAISE(ABORT, 'database refuses writes'); END")
        elif pg:
            conn.exec_driver_sql("DROP TRIGGER refuse ON oauth_tokens")
            conn.exec_driver_sql("DROP FUNCTION refuse()")
        else:
            conn.exec_driver_sql("DROP TRIGGER refuse")


def test_a_refresh_the_database_missed_is_recovered_not_lost(services, sandbox):
    """Feishu rotated the refresh token but the new pair could not be stored: the next caller
    stores the parked pair instead of spending the (now dead) old refresh token."""
    from sqlalchemy.exc import DBAPIError

    _, state = sandbox
    authorize(services)
    generation = _row(services).generation
    expire_in(services, DEFAULT_USER_OPEN_ID, 60)
    _fail_updates(services, True)
    with pytest.raises(DBAPIError, match="database refuses writes"):
        services.user_tokens.get_valid_user_token()
    assert _refreshes(state) == 1 and _row(services).generation == generation
    _fail_updates(services, False)

    token = services.user_tokens.get_valid_user_token()
    assert _refreshes(state) == 1  # no second refresh: the old refresh token is spent
    row = _row(services)
    assert (row.generation, row.status) == (generation + 1, "active")
    [latest] = services.user_tokens.history(DEFAULT_USER_OPEN_ID, limit=1)
    assert (latest.cause, latest.outcome) == ("recovered", "refreshed")
    assert _user_info(services).data.open_id == DEFAULT_USER_OPEN_ID
    assert services.user_tokens.get_valid_user_token() == token
    expire_in(services, DEFAULT_USER_OPEN_ID, 60)
    assert services.user_tokens.get_valid_user_token() != token  # the stored refresh token works
    assert _refreshes(state) == 2


def test_sandbox_lifetimes_drive_what_the_bridge_stores(services, sandbox):
    base_url, state = sandbox
    original = (state.config.user_token_lifetime, state.config.refresh_token_lifetime)
    try:
        answer = httpx.post(f"{base_url}/sandbox/lifetimes", json={"user_token": 600, "refresh_token": 86400})
        assert answer.json()["user_token"] == 600
        assert httpx.post(f"{base_url}/sandbox/lifetimes", json={"user_token": -1}).status_code == 400
        authorize(services)
        row = _row(services)
        left = (row.expires_at - utcnow()).total_seconds()
        assert 590 < left <= 600
        assert 86390 < (row.refresh_expires_at - utcnow()).total_seconds() <= 86400
    finally:
        state.config.user_token_lifetime, state.config.refresh_token_lifetime = original
