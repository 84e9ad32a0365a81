"""Pipelines against the sandbox: the ads platform (its own OAuth) into a real bitable table,
through lark-oapi and the bridge's one token path (issue 17's acceptance)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from bot.config import ProviderCredentials
from bot.db import init_schema
from bot.pipelines import runner, runs, store
from bot.services import build_services, install
from sandbox.seed import ADS_DAILY_TABLE_ID, PIPELINE_APP_TOKEN
from sandbox.seed_ads import ADS_APP_ID, ADS_SECRET

DAY = date(2026, 11, 29)
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pipelines" / "ads-daily.json"
KEY = ["日期", "账户ID", "计划ID"]
# where the database plays no part worth a second run (the sandbox does the work)
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def ads_spec(name: str = "ads-daily", **overrides) -> dict:
    spec = {
        "name": name, "source": {"kind": "python", "callable": "bot.pipelines.examples:ads_daily_report"},
        "target": {"app_token": PIPELINE_APP_TOKEN, "table_id": ADS_DAILY_TABLE_ID},
        "key": KEY, "partition": "日期", "schedule": "daily 07:00", "provider": "ads",
        "group_by": "账户ID", "sum_fields": ["消耗"],
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def bridge(settings, redis_conn, sandbox) -> Iterator[tuple]:
    base_url, state = sandbox
    providers = {"ads": ProviderCredentials(client_id=ADS_APP_ID, client_secret=ADS_SECRET,
                                            api_url=f"{base_url}/ads")}
    built = build_services(settings.model_copy(update={
        "oauth_providers": providers, "pipeline_modules": "bot.pipelines.examples",
        "pipeline_reread_delay_seconds": 0.0}))
    init_schema(built.engine)
    install(built)
    built.provider_tokens._retry_wait = 0.01
    yield built, base_url, state
    built.close()


def grant(services, base_url: str, *, expired: bool = False) -> dict:
    issued = httpx.post(f"{base_url}/sandbox/ads/grant").json()
    services.provider_tokens.store_grant("ads", refresh_token=issued["refresh_token"],
                                         access_token=issued["access_token"], expires_in=issued["expires_in"],
                                         refresh_expires_in=issued["refresh_token_expires_in"])
    if expired:
        httpx.post(f"{base_url}/sandbox/ads/expire")  # the platform now answers 40102 to it
    return issued


def truth(base_url: str, first: date, last: date) -> set[tuple]:
    rows = httpx.get(f"{base_url}/sandbox/ads/report", params={"from": first.isoformat(),
                                                               "to": last.isoformat()}).json()
    rows = rows["list"]
    return {(r["stat_date"], str(r["advertiser_id"]), str(r["campaign_id"]), round(float(r["cost"]), 2),
             int(r["show"]), int(r["click"]), int(r["convert"])) for r in rows}


def table(base_url: str) -> list[dict]:
    path = f"/sandbox/bitable/tables/{PIPELINE_APP_TOKEN}/{ADS_DAILY_TABLE_ID}/rows"
    return httpx.get(f"{base_url}{path}").json()["rows"]


def as_truth(rows: list[dict]) -> list[tuple]:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Asia/Shanghai")
    out = []
    for row in rows:
        f = row.get("fields", row)
        day = datetime.fromtimestamp(f["日期"] / 1000, UTC).astimezone(zone).date().isoformat()
        out.append((day, f["账户ID"], f["计划ID"], round(float(f["消耗"]), 2), int(f["展示"]), int(f["点击"]),
                    int(f["转化"])))
    return out


def writes(base_url: str) -> dict:
    return httpx.get(f"{base_url}/sandbox/bitable/writes").json()


def run_now(services, name: str, dates) -> runs.RunStatus:
    run_id = runs.create(services.engine, name, runs.run_days(services, name, dates), "manual")
    outcome = runner.run_pipeline(services, run_id)
    assert outcome.state == "succeeded", outcome.text
    return runs.status(services.engine, run_id)


def test_a_day_with_an_expired_token_refreshes_once_and_writes_exactly_the_platforms_rows(bridge):
    services, base_url, _ = bridge
    store.add(services, ads_spec())
    grant(services, base_url, expired=True)
    first = run_now(services, "ads-daily", DAY)
    assert httpx.get(f"{base_url}/sandbox/ads/stats").json()["refreshes"] == 1
    rows = as_truth(table(base_url))
    assert len(rows) == len(set(rows)) and set(rows) == truth(base_url, DAY, DAY)

    before = writes(base_url)
    again = run_now(services, "ads-daily", DAY)  # the same day again: nothing to write
    assert first.created == len(rows) and first.summary["ok"]
    assert sorted(as_truth(table(base_url))) == sorted(rows)
    assert writes(base_url) == before  # not one write call
    assert (again.created, again.updated, again.deleted) == (0, 0, 0) and again.summary["ok"]


def cli_env(services) -> dict[str, str]:
    from tests.test_provider_tokens import _env

    return _env(services, PIPELINE_REREAD_DELAY_SECONDS="0")


@SQLITE_ONLY
def test_a_90_day_backfill_from_the_cli_writes_every_row_once_within_feishus_call_limits(bridge):
    from click.testing import CliRunner

    from bot.cli.main import main as cli

    services, base_url, _ = bridge
    added = CliRunner().invoke(cli, ["pipeline", "add", str(EXAMPLE)], env=cli_env(services))
    assert added.exit_code == 0, added.output
    shipped = store.get(services.engine, "ads-daily").spec
    assert shipped == shipped.model_validate(ads_spec())  # the shipped example: the seed's daily job
    grant(services, base_url)
    first, last = DAY - timedelta(days=89), DAY
    result = CliRunner().invoke(cli, ["pipeline", "run", "ads-daily", "--from", first.isoformat(), "--to",
                                      last.isoformat(), "--json"], env=cli_env(services))
    assert result.exit_code == 0, result.output
    run = json_of(result.output)
    expected = truth(base_url, first, last)
    rows = as_truth(table(base_url))
    assert len(rows) == len(expected) == run["created"] and set(rows) == expected
    counts = writes(base_url)["calls"]
    creates = sum(n for (endpoint, code), n in _calls(counts) if endpoint.endswith("batch_create"))
    others = sum(n for (endpoint, code), n in _calls(counts) if not endpoint.endswith("batch_create"))
    assert creates == math.ceil(len(expected) / 1000) and others == 0
    reads = 1 + 2 * math.ceil(len(expected) / 500)  # fields; the keys before, and read back after
    assert run["calls"] <= creates + reads


def json_of(output: str) -> dict:
    return __import__("json").loads(output[output.index("{"):])


def _calls(counts: dict[str, dict[str, int]]) -> list[tuple[tuple[str, int], int]]:
    """The sandbox's write counts ({endpoint: {code: n}}) as ((endpoint, code), n)."""
    return [((endpoint, int(code)), n) for endpoint, by_code in counts.items() for code, n in by_code.items()]


def test_16_runs_in_4_processes_share_one_refresh_and_one_table_without_losing_a_write(bridge):
    """Sixteen pipelines (one day each, one provider, one table — so they only upsert) started at
    one instant across four processes: the about-to-expire token is refreshed once, the table's
    writers queue on its lock (and back off on 1254291/1254290), and the table ends with exactly
    the platform's rows."""
    import json
    import subprocess
    import sys
    import time

    from tests import processes

    services, base_url, _ = bridge
    days = [DAY - timedelta(days=n) for n in range(16)]
    for n in range(16):
        store.add(services, ads_spec(f"ads-{n}", delete_missing=False))
    issued = grant(services, base_url)
    services.provider_tokens.store_grant("ads", refresh_token=issued["refresh_token"],
                                         access_token=issued["access_token"], expires_in=60)  # due now
    run_ids = [runs.create(services.engine, f"ads-{n}", [days[n]], "manual") for n in range(16)]
    start_at = time.time() + 5  # after every process has started
    env = cli_env(services)
    procs = [processes.spawn([sys.executable, "-m", "tests.pipeline_runners", str(start_at),
                              *map(str, run_ids[k::4])], env=env, stdout=subprocess.PIPE, text=True)
             for k in range(4)]
    results = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert [e for r in results for e in r["errors"]] == []
    assert sorted(s for r in results for s in r["outcomes"].values()) == ["succeeded"] * 16
    assert httpx.get(f"{base_url}/sandbox/ads/stats").json()["refreshes"] == 1
    rows = as_truth(table(base_url))
    assert len(rows) == len(set(rows)) and set(rows) == truth(base_url, days[-1], days[0])


def test_a_revoked_grant_fails_the_run_with_the_fix_named_and_one_alert(bridge):
    from click.testing import CliRunner
    from sqlalchemy import select

    from bot.cli.main import main as cli
    from bot.models import Alert

    services, base_url, _ = bridge
    store.add(services, ads_spec())
    grant(services, base_url, expired=True)
    httpx.post(f"{base_url}/sandbox/ads/revoke")
    for _ in range(2):  # twice: still one alert
        result = CliRunner().invoke(cli, ["pipeline", "run", "ads-daily", "--date", DAY.isoformat()],
                                    env=cli_env(services))
        assert result.exit_code == 1
        [line] = [x for x in result.output.strip().splitlines() if x.strip()]
        assert "failed" in line and "feishu-bridge auth provider-login ads" in line, line
    [grant_row] = services.provider_tokens.grants("ads")
    assert grant_row.status == "reauth_required"
    with services.sessions() as session:
        kinds = [a.kind for a in session.scalars(select(Alert))]
    assert kinds.count("token_reauth_required") == 1
    assert table(base_url) == []


@SQLITE_ONLY
def test_with_a_fifth_of_write_calls_refused_or_lost_the_table_still_ends_exact(bridge):
    services, base_url, _ = bridge
    store.add(services, ads_spec())
    grant(services, base_url)
    first = DAY - timedelta(days=29)
    # thirty one-day runs: thirty batch_creates for the faults to land on (three ten-day runs made
    # three, and about half the time none failed); the first create is applied, then answered 504
    httpx.post(f"{base_url}/sandbox/faults", json={
        "bitable_write_error_rate": 0.2, "bitable_write_error_kinds": ["1254290", "429", "5xx"],
        "bitable_write_applied_then_5xx_rate": 0.1, "bitable_write_applied_then_5xx_count": 1})
    for n in range(30):
        run_now(services, "ads-daily", first + timedelta(days=n))
    faulted = [code for (endpoint, code), n in _calls(writes(base_url)["calls"]) for _ in range(n) if code]
    rows = as_truth(table(base_url))
    assert len(rows) == len(set(rows)) and set(rows) == truth(base_url, first, DAY)
    assert faulted, "no write call was refused: the fault knobs did not fire"


def test_an_sql_pipeline_mirrors_a_bridge_table_and_keeps_it_in_step_on_its_schedule(bridge):
    from datetime import UTC, datetime

    from sqlalchemy import text

    services, base_url, _ = bridge
    with services.engine.begin() as conn:
        conn.execute(text("CREATE TABLE shop_orders (order_no VARCHAR(20) PRIMARY KEY, customer VARCHAR(50), "
                          "amount NUMERIC(10, 2))"))
        conn.execute(text("INSERT INTO shop_orders VALUES (:o, :c, :a)"),
                     [{"o": f"SO-{n:04d}", "c": f"客户{n % 7}", "a": n * 10.5} for n in range(1, 1201)])
    made = httpx.post(f"{base_url}/sandbox/bitable/tables", json={"name": "订单镜像", "fields": [
        {"field_name": "订单号", "type": 1}, {"field_name": "客户", "type": 1},
        {"field_name": "金额", "type": 2}]}).json()
    store.add(services, {
        "name": "orders-mirror", "schedule": "every 5m", "key": ["订单号"], "group_by": "客户",
        "sum_fields": ["金额"],
        "source": {"kind": "sql", "query": 'SELECT order_no AS "订单号", customer AS "客户", '
                                           'amount AS "金额" FROM shop_orders'},
        "target": {"app_token": made["app_token"], "table_id": made["table_id"]},
    })

    def mirrored() -> dict[str, tuple[str, float]]:
        rows = httpx.get(f"{base_url}/sandbox/bitable/tables/{made['app_token']}/{made['table_id']}/rows")
        return {r["fields"]["订单号"]: (r["fields"]["客户"], float(r["fields"]["金额"]))
                for r in rows.json()["rows"]}

    def source() -> dict[str, tuple[str, float]]:
        with services.engine.connect() as conn:
            return {o: (c, float(a)) for o, c, a in conn.execute(text("SELECT * FROM shop_orders"))}

    def tick(now: datetime) -> list[int]:
        started = runs.start_due(services, now)["started"]
        for run_id in started:
            assert runner.run_pipeline(services, run_id).state == "succeeded"
        return started

    assert tick(datetime.now(UTC)) == []  # first due one interval after it was added
    now = datetime.now(UTC) + timedelta(minutes=5)
    assert len(tick(now)) == 1 and mirrored() == source() and len(source()) == 1200
    assert tick(now + timedelta(minutes=1)) == []  # not due yet

    with services.engine.begin() as conn:  # the bridge's table moves on
        conn.execute(text("UPDATE shop_orders SET amount = amount + 1 WHERE order_no <= 'SO-0010'"))
        conn.execute(text("DELETE FROM shop_orders WHERE order_no > 'SO-1150'"))
        conn.execute(text("INSERT INTO shop_orders VALUES ('SO-9999', '新客户', 99.5)"))
    [run_id] = tick(now + timedelta(minutes=5))
    status = runs.status(services.engine, run_id)
    assert (status.created, status.updated, status.deleted) == (1, 10, 50)
    assert mirrored() == source() and len(source()) == 1151


@SQLITE_ONLY
def test_pipeline_run_from_chat_answers_with_a_card_that_ends_with_the_verified_result(bridge):
    import json

    from rq import SimpleWorker

    from bot.chat.parser import Command, UsageError, parse
    from jobs.chat import refresh_chat_cards
    from sandbox.state import DEFAULT_USER_OPEN_ID
    from tests.test_chat_commands import run as say

    assert parse("/管道 运行 ads-daily 2026-11-29") == Command(
        "pipeline", "run", args=("ads-daily",), start=DAY, end=DAY)
    with pytest.raises(UsageError, match="用法"):
        parse("/pipeline run")
    services, base_url, state = bridge
    services.settings.chat_admins = [DEFAULT_USER_OPEN_ID]
    store.add(services, ads_spec())
    grant(services, base_url)
    outcome, [card] = say(services, state, f"/pipeline run ads-daily {DAY}")
    assert outcome == "pipeline run: ok" and card.msg_type == "interactive"
    assert json.loads(card.content)["header"]["template"] == "blue"
    SimpleWorker([services.queues["pipelines"]], connection=services.redis).work(burst=True)
    assert refresh_chat_cards() == 1
    final = json.dumps(json.loads(state.messages[card.message_id].content), ensure_ascii=False)
    expected = truth(base_url, DAY, DAY)
    accounts = len({row[1] for row in expected})
    assert '"green"' in final and f"{accounts}/7" in final and f"{len(expected)}" in final
    assert refresh_chat_cards() == 0  # final: no more patches
    _, [unknown] = say(services, state, "/pipeline run 不存在")
    assert "没有名为" in json.loads(unknown.content)["text"]
    _, [listed] = say(services, state, "/pipeline list")
    assert "ads-daily" in json.loads(listed.content)["text"]


@SQLITE_ONLY
def test_the_dashboard_shows_pipelines_runs_and_provider_grants(bridge):
    from bot.app import create_app
    from tests.test_dashboard import SAME_ORIGIN, TOKEN

    services, base_url, _ = bridge
    store.add(services, ads_spec())
    grant(services, base_url)
    run = run_now(services, "ads-daily", DAY)
    client = create_app(services=services).test_client()
    client.post("/login", data={"token": TOKEN}, headers=SAME_ORIGIN)
    panels = client.get("/dashboard/panels").get_data(as_text=True)
    assert "ads-daily" in panels and f"#{run.id} succeeded" in panels and "daily 07:00" in panels
    assert f"+{run.created} ~0 -0" in panels and "ads: default" in panels
    assert services.provider_tokens.get_valid_token("ads") not in panels


@SQLITE_ONLY
def test_up_sandbox_points_the_example_provider_at_the_sandbox(settings):
    from bot.processes.up import _feishu_env, sandbox_settings

    wired = sandbox_settings(settings, 9123)
    assert wired.oauth_providers["ads"].api_url == "http://127.0.0.1:9123/ads"
    env = __import__("json").loads(_feishu_env(wired)["OAUTH_PROVIDERS"])  # the children get it
    assert env["ads"]["client_id"] == ADS_APP_ID and env["ads"]["client_secret"] == ADS_SECRET
