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
from sandbox.bitable_seed import BIG_TABLE, DEFECT_COUNT, DEFECTS_TABLE, QUALITY_APP, QUALITY_NODE

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
