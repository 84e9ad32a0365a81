"""Bitable caches against the sandbox's seeded wiki-hosted app."""

from __future__ import annotations

import json
import math

import pytest
from sqlalchemy import select

from bot.caches import store
from bot.caches.sources import SourceError, parse_interval, parse_source
from bot.caches.sync import sync_source
from bot.models import CacheField, CacheRecord
from sandbox.seed import BIG_TABLE, DEFECT_COUNT, DEFECTS_TABLE, QUALITY_APP, QUALITY_NODE

WIKI_URL = f"https://example.feishu.cn/wiki/{QUALITY_NODE}?from=from_copylink"


# -- pure parsing --------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "kind", "token"), [
    (WIKI_URL, "wiki", QUALITY_NODE),
    (f"https://x.feishu.cn/base/{QUALITY_APP}?table=tblA&view=vewB", "bitable", QUALITY_APP),
    ("https://x.feishu.cn/sheets/shtcnAbCdEf123", "sheet", "shtcnAbCdEf123"),
    ("https://x.feishu.cn/docx/doxcnAbCdEf123", "doc", "doxcnAbCdEf123"),
    ("wikcnSomething123", "wiki", "wikcnSomething123"),
])
def test_sources_parse_urls_and_tokens(given, kind, token):
    ref = parse_source(given)
    assert (ref.kind, ref.token) == (kind, token)


def test_unclear_sources_are_refused_with_a_reason():
    with pytest.raises(SourceError, match="pass --kind"):
        parse_source("Xy7pQ9rS2tUv")
    assert parse_source("Xy7pQ9rS2tUv", "bitable").kind == "bitable"
    with pytest.raises(SourceError, match="not a Feishu document URL"):
        parse_source("https://example.com/nothing/here")
    with pytest.raises(SourceError, match="look like a Feishu token"):
        parse_source("bad token; drop table")
    assert parse_interval("90m") == 5400 and parse_interval("2") == 7200
    with pytest.raises(SourceError):
        parse_interval("soon")


# -- sync ----------------------------------------------------------------------------------

def _truth(state, table_id):
    table = state.apps[QUALITY_APP].tables[table_id]
    table.ensure_built()
    return table


def _cached(services, source_id, table_id) -> dict[str, dict]:
    with services.sessions() as session:
        rows = session.execute(select(CacheRecord.record_id, CacheRecord.fields).where(
            CacheRecord.source_id == source_id, CacheRecord.table_id == table_id)).all()
    return {rid: json.loads(fields) for rid, fields in rows}


def test_wiki_bitable_sync_mirrors_every_value_and_skips_within_ttl(services, sandbox):
    _, state = sandbox
    source = store.add_source(services.engine, "quality", WIKI_URL, parse_source(WIKI_URL), 3600)
    result = sync_source(services, "quality")
    assert result.outcome == "synced" and result.tables == 3

    for table_id in state.apps[QUALITY_APP].tables:
        truth = _truth(state, table_id)
        cached = _cached(services, source.id, table_id)
        assert cached == {rid: r["fields"] for rid, r in truth.records.items()}, table_id
        with services.sessions() as session:
            fields = session.scalars(select(CacheField).where(CacheField.source_id == source.id,
                                                              CacheField.table_id == table_id)
                                     .order_by(CacheField.position)).all()
        assert [(f.field_id, f.name, f.type) for f in fields] == [
            (f.field_id, f.field_name, f.type) for f in truth.fields]

    [summary] = store.summary(services.engine)
    assert summary["title"] == "质量问题跟踪" and summary["status"] == "ok" and not summary["stale"]
    defects = next(t for t in summary["tables"] if t["table_id"] == DEFECTS_TABLE)
    assert defects["records"] == DEFECT_COUNT == 253

    # calls: wiki node + subscribe + table list + per table (1 field page + ceil(N/500) record pages)
    sizes = [len(_truth(state, t).records) for t in state.apps[QUALITY_APP].tables]
    floor = sum(math.ceil(n / 500) for n in sizes)
    assert result.api_calls == 3 + len(sizes) + floor
    assert QUALITY_APP in state.subscriptions

    calls_before = len(state.api_calls)
    assert sync_source(services, "quality").outcome == "fresh"
    assert len(state.api_calls) == calls_before  # within TTL: no API calls at all
    forced = sync_source(services, "quality", force=True)
    assert forced.outcome == "synced" and len(state.api_calls) > calls_before


def test_sync_survives_rate_limits_with_backoff(services, sandbox):
    _, state = sandbox
    store.add_source(services.engine, "quality", WIKI_URL, parse_source(WIKI_URL), 3600)
    state.faults.update({"rate_limit": 0.2})
    result = sync_source(services, "quality")
    state.faults.update({"rate_limit": 0.0})
    assert result.records == sum(len(_truth(state, t).records) for t in state.apps[QUALITY_APP].tables)
    assert any(c["status"] == 429 for c in state.api_calls)
    assert BIG_TABLE in {t["table_id"] for t in store.summary(services.engine)[0]["tables"]}


# -- query ---------------------------------------------------------------------------------

def test_cell_text_and_filters_cover_the_value_shapes():
    from bot.caches.query import Condition, cell_text, matches

    assert cell_text(["前端", "安全"]) == "前端, 安全"
    assert cell_text([{"id": "ou_1", "name": "张伟"}]) == "张伟"
    assert cell_text({"link": "https://x", "text": "BUG-1"}) == "BUG-1"
    assert cell_text(1672531200000, 5) == "2023-01-01 00:00:00"
    assert cell_text(True) == "true" and cell_text(3.0) == "3" and cell_text(None) == ""
    assert cell_text({"link_record_ids": ["recA", "recB"]}) == "recA, recB"
    fields = {"标签": ["前端", "安全"], "是否闭环": False}
    assert matches(fields, {}, [Condition("标签", "安全"), Condition("是否闭环", "false")])
    assert not matches(fields, {}, [Condition("标签", "数据")])
    assert matches(fields, {}, [Condition("负责人", "")])  # empty cell


def _synced(services):
    store.add_source(services.engine, "quality", WIKI_URL, parse_source(WIKI_URL), 3600)
    sync_source(services, "quality")


def test_api_serves_the_cache_behind_the_admin_token(services, client, sandbox):
    _, state = sandbox
    _synced(services)
    assert client.get("/api/v1/cache").status_code == 401
    auth = {"Authorization": "Bearer admin-token-for-tests-0001-0123456789abcdef"}
    summary = client.get("/api/v1/cache", headers=auth).get_json()
    assert {t["name"]: t["records"] for t in summary["sources"][0]["tables"]}["缺陷问题闭环表"] == 253
    url = "/api/v1/cache/quality/缺陷问题闭环表?where=严重程度=致命&limit=1000"
    rows = client.get(url, headers=auth).get_json()
    truth = [r for r in _truth(state, DEFECTS_TABLE).records.values() if r["fields"]["严重程度"] == "致命"]
    assert rows["count"] == len(truth) > 0
    assert {r["record_id"] for r in rows["records"]} == {r["record_id"] for r in truth}
    bad = client.get("/api/v1/cache/quality/缺陷问题闭环表?where=nope=1", headers=auth)
    assert bad.status_code == 422 and "nope" in bad.get_json()["msg"]
    missing = client.get("/api/v1/cache/quality/nosuch", headers=auth)
    assert missing.status_code == 404 and "缺陷问题闭环表" in missing.get_json()["msg"]


def test_cli_summary_query_and_exports(services, sandbox, tmp_path):
    from click.testing import CliRunner

    from bot.cli.main import main as cli

    _synced(services)
    settings = services.settings
    env = {"DATABASE_URL": settings.effective_database_url, "REDIS_URL": settings.redis_url,
           "VAR_DIR": str(settings.var_dir)}
    runner = CliRunner()
    summary = runner.invoke(cli, ["cache", "summary", "--json"], env=env)
    tables = json.loads(summary.output)["sources"][0]["tables"]
    assert {t["name"]: t["records"] for t in tables} == {"缺陷问题闭环表": 253, "人力盘点": 120,
                                                         "大表": 50_000}
    query = runner.invoke(cli, ["cache", "query", "quality", "人力盘点", "--where", "部门=测试部", "--json"],
                          env=env)
    doc = json.loads(query.output)
    assert doc["count"] > 0 and all(r["fields"]["部门"] == "测试部" for r in doc["records"])
    xlsx, csv = tmp_path / "people.xlsx", tmp_path / "people.csv"
    exported = runner.invoke(cli, ["cache", "query", "quality", "人力盘点", "--xlsx", str(xlsx),
                                   "--csv", str(csv)], env=env)
    assert exported.exit_code == 0, exported.output
    import pandas as pd

    sheet = pd.read_excel(xlsx)
    assert len(sheet) == 120 and list(sheet.columns)[:3] == ["record_id", "姓名", "部门"]
    assert len(pd.read_csv(csv, encoding="utf-8-sig")) == 120
    unknown = runner.invoke(cli, ["cache", "query", "quality", "人力盘点", "--where", "工资=1"], env=env)
    assert unknown.exit_code == 1 and "unknown field '工资'" in unknown.output


# -- spreadsheets and docs -------------------------------------------------------------------

def test_spreadsheet_and_wiki_guide_docs_are_mirrored(services, sandbox):
    from bot.models import CacheDocument, CacheSheet
    from sandbox.seed import GUIDE_COUNT, GUIDE_NODE, SHEET_TOKEN

    _, state = sandbox
    sheet_url = f"https://x.feishu.cn/sheets/{SHEET_TOKEN}"
    sheet_source = store.add_source(services.engine, "inventory", sheet_url, parse_source(sheet_url), 3600)
    guide_source = store.add_source(services.engine, "guides", GUIDE_NODE,
                                    parse_source(GUIDE_NODE, "wiki-space"), 3600)
    sheet_result = sync_source(services, "inventory")
    guide_result = sync_source(services, "guides")

    truth = state.spreadsheets[SHEET_TOKEN]
    with services.sessions() as session:
        sheets = session.scalars(select(CacheSheet).where(CacheSheet.source_id == sheet_source.id)
                                 .order_by(CacheSheet.position)).all()
        docs = session.scalars(select(CacheDocument).where(CacheDocument.source_id == guide_source.id)).all()
    width = [s.column_count for s in truth.sheets]
    assert [(s.sheet_id, s.title) for s in sheets] == [(t.sheet_id, t.title) for t in truth.sheets]
    for cached, expected, columns in zip(sheets, truth.sheets, width, strict=True):
        padded = [row + [None] * (columns - len(row)) for row in expected.values]
        assert json.loads(cached.cell_values) == padded
    assert sheet_result.records == 3001 + 6
    assert sheet_result.api_calls == 1 + math.ceil(3001 / 2000) + 1  # sheet list + value chunks

    assert len(docs) == GUIDE_COUNT + 1 and guide_result.tables == GUIDE_COUNT + 1
    for doc in docs:
        source_doc = state.documents[doc.document_id]
        assert doc.raw_content == source_doc.raw_content()
        assert json.loads(doc.blocks) == source_doc.blocks()
    summary = {s["source"]: s for s in store.summary(services.engine)}
    assert summary["inventory"]["sheets"] == [{"title": "明细", "rows": 3001}, {"title": "汇总", "rows": 6}]
    assert len(summary["guides"]["documents"]) == GUIDE_COUNT + 1


def test_sources_and_sync_once_through_the_cli(services, sandbox):
    """The seeds' `auto_sync_all.py --once`: declare the sources, sync once, check the counts."""
    from click.testing import CliRunner

    from bot.cli.main import main as cli
    from sandbox.seed import GUIDE_NODE, SHEET_TOKEN

    settings = services.settings
    env = {"DATABASE_URL": settings.effective_database_url, "REDIS_URL": settings.redis_url,
           "VAR_DIR": str(settings.var_dir), "FEISHU_BASE_URL": settings.feishu_base_url,
           "FEISHU_APP_ID": settings.feishu_app_id,
           "FEISHU_APP_SECRET": settings.feishu_app_secret.get_secret_value(),
           "FEISHU_RETRY_MAX_WAIT": "0.05"}
    runner = CliRunner()
    for argv in (["sources", "add", WIKI_URL, "--name", "quality"],
                 ["sources", "add", f"https://x.feishu.cn/sheets/{SHEET_TOKEN}", "--name", "inventory",
                  "--interval", "2h"],
                 ["sources", "add", GUIDE_NODE, "--name", "guides", "--kind", "wiki-space"]):
        result = runner.invoke(cli, argv, env=env)
        assert result.exit_code == 0, result.output
    bad = runner.invoke(cli, ["sources", "add", "Xy7pQ9rS2tUv", "--name", "mystery"], env=env)
    assert bad.exit_code == 1 and "pass --kind" in bad.output

    first = runner.invoke(cli, ["sync", "--once", "--json"], env=env)
    assert first.exit_code == 0, first.output
    outcomes = {r["source"]: r["outcome"] for r in json.loads(first.output)["results"]}
    assert outcomes == {"quality": "synced", "inventory": "synced", "guides": "synced"}
    again = runner.invoke(cli, ["sync", "--once", "--json"], env=env)
    assert {r["outcome"] for r in json.loads(again.output)["results"]} == {"fresh"}
    forced = runner.invoke(cli, ["sync", "quality", "--once", "--force", "--json"], env=env)
    assert [r["outcome"] for r in json.loads(forced.output)["results"]] == ["synced"]

    summary = runner.invoke(cli, ["cache", "summary"], env=env)
    assert "缺陷问题闭环表" in summary.output and "253" in summary.output
    listed = json.loads(runner.invoke(cli, ["sources", "list", "--json"], env=env).output)["sources"]
    assert {s["name"]: s["status"] for s in listed} == {"guides": "ok", "inventory": "ok", "quality": "ok"}
    removed = runner.invoke(cli, ["sources", "remove", "inventory"], env=env)
    assert removed.exit_code == 0
    assert [s.name for s in store.list_sources(services.engine)] == ["guides", "quality"]


# -- events, in process --------------------------------------------------------------------

def _event(kind: str, **event) -> dict:
    return {"schema": "2.0", "header": {"event_id": f"ev-{kind}", "event_type": kind}, "event": event}


def _work(services) -> None:
    from rq import SimpleWorker

    SimpleWorker([services.queues["default"]], connection=services.redis).work(burst=True)


def test_change_events_apply_current_state_and_field_events_refresh_the_schema(services, sandbox):
    from handlers.bitable import on_field_changed, on_record_changed

    base_url, state = sandbox
    _synced(services)
    source = store.get_source(services.engine, "quality")
    table = _truth(state, DEFECTS_TABLE)
    edited, deleted = "recDefect00000001", "recDefect00000002"
    table.records[edited]["fields"]["工时"] = 99.5
    del table.records[deleted]
    # the same records named twice, deletion first: order and repetition must not matter
    for actions in ([{"record_id": deleted, "action": "record_deleted"}],
                    [{"record_id": edited, "action": "record_edited"}, {"record_id": deleted,
                                                                         "action": "record_deleted"}]):
        doc = _event("drive.file.bitable_record_changed_v1", file_token=QUALITY_APP, table_id=DEFECTS_TABLE,
                     action_list=actions)
        assert on_record_changed(services, doc).startswith("noted")
    assert len(services.queues["default"]) == 1  # coalesced: one apply job for both events
    _work(services)
    cached = _cached(services, source.id, DEFECTS_TABLE)
    assert cached[edited]["工时"] == 99.5 and deleted not in cached
    assert cached == {rid: r["fields"] for rid, r in table.records.items()}
    assert store.pending(services.engine, source.id, DEFECTS_TABLE) == []
    [summary] = store.summary(services.engine)
    assert {t["table_id"]: t["records"] for t in summary["tables"]}[DEFECTS_TABLE] == 252

    import httpx

    httpx.post(f"{base_url}/sandbox/bitable/{QUALITY_APP}/{DEFECTS_TABLE}/fields",
               json={"add": [{"field_name": "复盘结论", "type": 1}]})
    on_field_changed(services, _event("drive.file.bitable_field_changed_v1", file_token=QUALITY_APP,
                                      table_id=DEFECTS_TABLE, action_list=[]))
    _work(services)
    with services.sessions() as session:
        names = list(session.scalars(select(CacheField.name).where(
            CacheField.source_id == source.id, CacheField.table_id == DEFECTS_TABLE)
            .order_by(CacheField.position)))
    assert names[-1] == "复盘结论" and len(names) == len(table.fields)


def test_the_scheduler_enqueues_due_sources_and_leftover_changes(services, sandbox):
    from jobs.caches import schedule_cache_syncs

    store.add_source(services.engine, "quality", WIKI_URL, parse_source(WIKI_URL), 3600)
    assert schedule_cache_syncs() == ["quality"]  # never synced: due
    _work(services)
    assert store.get_source(services.engine, "quality").status == "ok"
    assert schedule_cache_syncs() == []  # fresh now
    source = store.get_source(services.engine, "quality")
    store.add_pending(services.engine, source.id, DEFECTS_TABLE, ["recDefect00000003"])
    with services.engine.begin() as conn:
        from sqlalchemy import update

        from bot.models import CachePending, utcnow

        conn.execute(update(CachePending).values(queued_at=utcnow().replace(year=2020)))
    schedule_cache_syncs()  # an apply job for the left-over pending row
    _work(services)
    assert store.pending(services.engine, source.id, DEFECTS_TABLE) == []
