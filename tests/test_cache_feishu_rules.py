"""Caches against rules real Feishu holds (issue 14): subscribing needs manage rights, and
formula/lookup values change without change events."""

from __future__ import annotations

import json
from datetime import timedelta

import requests
from click.testing import CliRunner
from sqlalchemy import select, update

from bot.caches import changes, formulas, schedule, store
from bot.caches.formulas import merge_computed
from bot.caches.sources import events_status, format_interval, parse_source, subscribe_refusal
from bot.caches.sync import sync_source
from bot.chat.texts import status_text
from bot.cli.main import main as cli
from bot.models import CacheRecord, CacheTable, utcnow
from bot.overview import overview
from sandbox.seed import DEFECTS_TABLE, QUALITY_APP

BASE_URL = f"https://x.feishu.cn/base/{QUALITY_APP}"


def _cached(services, source_id: int, table_id: str) -> dict[str, dict]:
    with services.sessions() as session:
        rows = session.execute(select(CacheRecord.record_id, CacheRecord.fields).where(
            CacheRecord.source_id == source_id, CacheRecord.table_id == table_id)).all()
    return {rid: json.loads(fields) for rid, fields in rows}


def _truth(state, table_id: str) -> dict[str, dict]:
    table = state.table(QUALITY_APP, table_id)
    return {rid: r["fields"] for rid, r in table.records.items()}


def _cli_env(services) -> dict[str, str]:
    settings = services.settings
    return {"DATABASE_URL": settings.effective_database_url, "REDIS_URL": settings.redis_url,
            "VAR_DIR": str(settings.var_dir), "FEISHU_BASE_URL": settings.feishu_base_url,
            "FEISHU_APP_ID": settings.feishu_app_id,
            "FEISHU_APP_SECRET": settings.feishu_app_secret.get_secret_value()}


# -- 1. subscribe needs manage rights ------------------------------------------------------

def test_events_status_says_why_and_how_often():
    refusal = subscribe_refusal(1069603, "forbidden")
    assert "owner or manager" in refusal and "1069603" in refusal
    status = events_status("bitable", False, refusal, 3600)
    assert status == f"no change events: {refusal}, refreshed every 1h"
    assert events_status("bitable", True, None, 900) == "change events"
    assert events_status("sheet", False, None, 900) is None
    assert [format_interval(s) for s in (86400, 5400, 3600, 90)] == ["1d", "90m", "1h", "90s"]


def test_a_read_only_bitable_syncs_every_record_and_says_it_gets_no_change_events(services, sandbox, client):
    base_url, state = sandbox
    assert requests.post(f"{base_url}/sandbox/files/{QUALITY_APP}/permission",
                         json={"role": "read"}, timeout=10).ok
    source = store.add_source(services.engine, "quality", BASE_URL, parse_source(BASE_URL), 3600)

    result = sync_source(services, "quality")

    assert result.outcome == "synced"
    for table_id in state.apps[QUALITY_APP].tables:
        assert _cached(services, source.id, table_id) == _truth(state, table_id), table_id
    [summary] = store.summary(services.engine)
    assert summary["status"] == "ok" and summary["last_error"] is None
    assert summary["events"].startswith("no change events: subscribe refused (code 1069603)")
    assert summary["events"].endswith("refreshed every 1h")
    # Every place a source's state is shown says it.
    listed = CliRunner().invoke(cli,
                                ["sources", "list", "--json"], env=_cli_env(services))
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)["sources"][0]["events"] == summary["events"]
    assert f"quality：{summary['events']}" in status_text(overview(services))
    assert client.post("/login", data={"token": services.settings.admin_token.get_secret_value()},
                       headers={"Origin": "http://localhost"}).status_code in (302, 303)
    panels = client.get("/dashboard/panels").get_data(as_text=True)
    assert "no change events: subscribe refused (code 1069603)" in panels
    # A user edit reaches nobody: the app is not subscribed.
    edit = requests.post(f"{base_url}/sandbox/bitable/{QUALITY_APP}/{DEFECTS_TABLE}/records",
                         json={"update": [{"record_id": "recDefect00000001", "fields": {"工时": 1.5}}]},
                         timeout=10).json()
    assert edit["subscribed"] is False and edit["event_ids"] == []

    # Once the owner grants manage rights, the next sync subscribes and the note goes away.
    assert requests.post(f"{base_url}/sandbox/files/{QUALITY_APP}/permission",
                         json={"role": "manage"}, timeout=10).ok
    assert sync_source(services, "quality", force=True).outcome == "synced"
    [summary] = store.summary(services.engine)
    assert summary["events"] == "change events" and QUALITY_APP in state.subscriptions
    assert _cached(services, source.id, DEFECTS_TABLE)["recDefect00000001"]["工时"] == 1.5


# -- 4. formula and lookup values change without events ------------------------------------

def test_merge_computed_replaces_only_the_computed_columns():
    stored = {"问题描述": "旧", "评分": [{"type": "text", "text": "a"}], "关联问题描述": [{"text": "x"}]}
    fresh = {"评分": [{"type": "text", "text": "b"}]}  # the lookup's target was emptied
    assert merge_computed(stored, fresh, ["评分", "关联问题描述"]) == {
        "问题描述": "旧", "评分": [{"type": "text", "text": "b"}]}


def test_lookup_values_changed_without_an_event_are_refreshed_on_schedule(services, sandbox):
    from rq import SimpleWorker

    base_url, state = sandbox
    source = store.add_source(services.engine, "quality", BASE_URL, parse_source(BASE_URL), 86400)
    assert sync_source(services, "quality").outcome == "synced"
    assert formulas.due_tables(services.engine, 3600) == []  # a full sync reads formulas too

    # 9 is linked from 10: editing 9's description changes 10's lookup, and Feishu notifies 9 only.
    edit = requests.post(f"{base_url}/sandbox/bitable/{QUALITY_APP}/{DEFECTS_TABLE}/records",
                         json={"update": [{"record_id": "recDefect00000009",
                                           "fields": {"问题描述": "第9号问题：已改写"}}]}, timeout=10).json()
    assert edit["subscribed"] and [a["record_id"] for a in edit["actions"]] == ["recDefect00000009"]
    truth = _truth(state, DEFECTS_TABLE)
    assert truth["recDefect00000010"]["关联问题描述"] == [{"type": "text", "text": "第9号问题：已改写"}]
    store.add_pending(services.engine, source.id, DEFECTS_TABLE, ["recDefect00000009"])
    changes.apply_pending(services, source.id, DEFECTS_TABLE)  # what the event's job does
    cached = _cached(services, source.id, DEFECTS_TABLE)
    assert cached["recDefect00000009"] == truth["recDefect00000009"]
    assert cached["recDefect00000010"] != truth["recDefect00000010"]  # stale: no event for it

    # An hour later the periodic pass re-reads the computed columns, and only those.
    with services.engine.begin() as conn:
        conn.execute(update(CacheTable).values(formulas_refreshed_at=utcnow() - timedelta(hours=2)))
    assert schedule.schedule_due(services) == []  # no full sync is due
    assert formulas.due_tables(services.engine, 3600) == [(source.id, DEFECTS_TABLE)]
    SimpleWorker([services.queues["default"]], connection=services.redis).work(burst=True)

    assert _cached(services, source.id, DEFECTS_TABLE) == truth
    assert formulas.due_tables(services.engine, 3600) == []
    [summary] = store.summary(services.engine)
    [defects] = [t for t in summary["tables"] if t["table_id"] == DEFECTS_TABLE]
    assert defects["formulas_refreshed_at"] > defects["full_refresh_at"]
    shown = CliRunner().invoke(cli,
                               ["cache", "summary", "--json"], env=_cli_env(services))
    assert shown.exit_code == 0, shown.output
    [row] = [t for t in json.loads(shown.output)["sources"][0]["tables"] if t["table_id"] == DEFECTS_TABLE]
    assert row["full_refresh_at"] == defects["full_refresh_at"]
