"""Caches stay exact against the real Feishu's habits (issue 14, items 5 and 6): tables that users
edit while the bridge pages through them, and text values whose shape depends on the endpoint.

The sandbox behaves as Feishu documents it (`batch_get` answers text as segments, the list only
with `text_field_as_array=true`; `paging_churn` edits a table between pages and notifies
subscribers); the bridge reads through the real SDK. Change events are caught at a local
stand-in webhook and handed to the real handler and apply job."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import select

from bot.caches import fetch, store
from bot.caches.fetch import Fetcher, TableData
from bot.caches.sources import parse_source
from bot.models import CacheRecord, utcnow
from sandbox.products.bitable import shown_fields
from sandbox.seed import DEFECT_COUNT, DEFECTS_TABLE, PEOPLE_TABLE, QUALITY_APP, TEXT
from sandbox.state import SANDBOX_APP_ID, SANDBOX_APP_SECRET, SANDBOX_ENCRYPT_KEY

SMALL_PAGE = 20  # 253 records → 13 pages, so there is a "between pages" to edit in


# -- helpers --------------------------------------------------------------------------------


@pytest.fixture
def inbox(sandbox) -> Iterator[list[dict]]:
    """Every event the sandbox pushes, decrypted, in arrival order: a stand-in for the webhook."""
    from lark_oapi.core.utils.decryptor import AESCipher

    _, state = sandbox
    received: list[dict] = []

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if "encrypt" in body:
                body = json.loads(AESCipher(SANDBOX_ENCRYPT_KEY).decrypt_str(body["encrypt"]))
            received.append(body)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.sender.config.webhook_url = f"http://127.0.0.1:{server.server_port}/webhook/event"
    try:
        yield received
    finally:
        state.sender.config.webhook_url = ""
        server.shutdown()
        server.server_close()


def _source(services) -> int:
    return store.add_source(services.engine, "quality", QUALITY_APP, parse_source(QUALITY_APP), 3600).id


def _full_read(services, fetcher: Fetcher, source_id: int, table_id: str) -> None:
    """What a full sync does for one table (sync.py's bitable path, without the other tables)."""
    table = TableData(table_id, table_id, None, fetcher.fields(QUALITY_APP, table_id),
                      fetcher.records(QUALITY_APP, table_id))
    store.replace_bitable(services.engine, source_id, [table], utcnow())


def _deliver(services, inbox: list[dict], state) -> int:
    """Hand every caught record-changed event to the real handler, then run the apply jobs."""
    from rq import SimpleWorker

    from handlers.bitable import on_record_changed

    assert state.sender.wait_idle(timeout=60)
    events = [e for e in inbox if e["header"]["event_type"] == "drive.file.bitable_record_changed_v1"]
    for event in events:
        on_record_changed(services, event)
    SimpleWorker([services.queues["default"]], connection=services.redis).work(burst=True)
    return len(events)


def _stored(services, source_id: int, table_id: str) -> dict[str, str]:
    """record_id → the fields JSON exactly as stored."""
    with services.sessions() as session:
        return dict(session.execute(select(CacheRecord.record_id, CacheRecord.fields).where(
            CacheRecord.source_id == source_id, CacheRecord.table_id == table_id)).all())


def _cached(services, source_id: int, table_id: str) -> dict[str, dict]:
    return {rid: json.loads(text) for rid, text in _stored(services, source_id, table_id).items()}


def _truth(state, table_id: str) -> dict[str, dict]:
    """The sandbox's records in the list endpoint's default shape (the cache's one shape)."""
    with state.lock:
        table = state.apps[QUALITY_APP].tables[table_id]
        return {rid: json.loads(json.dumps(shown_fields(table, r["fields"], text_as_array=False)))
                for rid, r in table.records.items()}


def _without_computed(records: dict[str, dict], state, table_id: str) -> dict[str, dict]:
    """Records less their formula and lookup cells: Feishu sends no event when only those change
    (a linked row was deleted), so events cannot be what keeps them exact (item 4 refreshes them)."""
    computed = {f.field_name for f in state.apps[QUALITY_APP].tables[table_id].fields if f.type in (19, 20)}
    return {rid: {k: v for k, v in fields.items() if k not in computed} for rid, fields in records.items()}


def _tenant_token(base_url: str) -> str:
    answer = httpx.post(f"{base_url}/open-apis/auth/v3/tenant_access_token/internal",
                        json={"app_id": SANDBOX_APP_ID, "app_secret": SANDBOX_APP_SECRET}).json()
    return answer["tenant_access_token"]


# -- 6. one value shape per field -------------------------------------------------------------


def test_the_sandbox_answers_each_endpoint_in_its_documented_shape(sandbox):
    base_url, state = sandbox
    headers = {"Authorization": f"Bearer {_tenant_token(base_url)}"}
    records = f"{base_url}/open-apis/bitable/v1/apps/{QUALITY_APP}/tables/{DEFECTS_TABLE}/records"
    ids = [f"recDefect{n:08d}" for n in range(1, 101)]

    def listed(**params) -> dict[str, dict]:
        answer = httpx.get(records, headers=headers, params={"page_size": 100, **params}).json()
        return {r["record_id"]: r["fields"] for r in answer["data"]["items"]}

    plain, arrays = listed(), listed(text_field_as_array="true")
    got = httpx.post(f"{records}/batch_get", headers=headers, json={"record_ids": ids}).json()["data"]
    batch = {r["record_id"]: r["fields"] for r in got["records"]}
    assert set(plain) == set(arrays) == set(batch) == set(ids)

    table = state.apps[QUALITY_APP].tables[DEFECTS_TABLE]
    text = {f.field_name for f in table.fields if f.type == TEXT}
    assert text == {"问题编号", "问题描述"}
    first = ids[0]
    assert plain[first]["问题编号"] == "BUG-0001"
    assert arrays[first]["问题编号"] == batch[first]["问题编号"] == [{"text": "BUG-0001", "type": "text"}]
    for rid in ids:  # every other type: one shape whatever the endpoint
        assert {k: v for k, v in batch[rid].items() if k not in text} == \
            {k: v for k, v in plain[rid].items() if k not in text} == \
            {k: v for k, v in arrays[rid].items() if k not in text}
        assert arrays[rid] == batch[rid]
        assert all(isinstance(plain[rid][name], str) for name in text if name in plain[rid])


def test_a_record_looks_the_same_after_a_full_sync_and_after_an_event(services, sandbox):
    _, state = sandbox
    source_id = _source(services)
    _full_read(services, Fetcher(services.feishu), source_id, DEFECTS_TABLE)
    after_sync = _stored(services, source_id, DEFECTS_TABLE)
    assert len(after_sync) == DEFECT_COUNT

    # every record named by a change event: re-fetched with batch_get through the real job
    from rq import SimpleWorker

    from handlers.bitable import on_record_changed

    ids = sorted(after_sync)
    header = {"event_id": "ev-shapes", "event_type": "drive.file.bitable_record_changed_v1"}
    actions = [{"record_id": r, "action": "record_edited"} for r in ids]
    on_record_changed(services, {"schema": "2.0", "header": header, "event": {
        "file_token": QUALITY_APP, "table_id": DEFECTS_TABLE, "action_list": actions}})
    calls_before = sum(1 for c in state.api_calls if c["path"].endswith("/batch_get"))
    SimpleWorker([services.queues["default"]], connection=services.redis).work(burst=True)
    assert sum(1 for c in state.api_calls if c["path"].endswith("/batch_get")) - calls_before == 3
    after_event = _stored(services, source_id, DEFECTS_TABLE)

    table = state.apps[QUALITY_APP].tables[DEFECTS_TABLE]
    seen = {name for text in after_sync.values() for name in json.loads(text)}
    assert seen == {f.field_name for f in table.fields}  # every seeded field type is compared
    for rid in ids:  # field by field, then byte for byte
        synced, refetched = json.loads(after_sync[rid]), json.loads(after_event[rid])
        for name in seen:
            assert synced.get(name) == refetched.get(name), (rid, name)
        assert after_sync[rid] == after_event[rid], rid
    assert _cached(services, source_id, DEFECTS_TABLE) == _truth(state, DEFECTS_TABLE)


# -- 5. tables change while being paged -------------------------------------------------------


def test_a_table_edited_between_pages_is_read_as_one_consistent_state(services, sandbox, monkeypatch):
    _, state = sandbox
    monkeypatch.setattr(fetch, "RECORDS_PAGE", SMALL_PAGE)
    source_id = _source(services)
    table = state.apps[QUALITY_APP].tables[DEFECTS_TABLE]
    before, revision = set(table.records), table.revision
    # users add 3 and delete 3 rows after each of the first 4 pages: rows shift both ways
    state.faults.update({"paging_churn": {"add": 3, "delete": 3, "pages": 4}})
    fetcher = Fetcher(services.feishu)
    _full_read(services, fetcher, source_id, DEFECTS_TABLE)

    truth = _truth(state, DEFECTS_TABLE)
    assert table.revision == revision + 4 and len(truth) == DEFECT_COUNT  # 4 rounds of +3 −3 rows
    assert set(truth) - before and before - set(truth)
    assert _cached(services, source_id, DEFECTS_TABLE) == truth  # no event needed: one exact state
    pages = -(-DEFECT_COUNT // SMALL_PAGE)
    assert fetcher.calls <= 1 + 3 * pages  # fields + a bounded number of passes


def test_a_busy_table_syncs_and_its_change_events_make_the_cache_exact(services, sandbox, monkeypatch, inbox):
    _, state = sandbox
    monkeypatch.setattr(fetch, "RECORDS_PAGE", SMALL_PAGE)
    source_id = _source(services)
    fetcher = Fetcher(services.feishu)
    fetcher.subscribe(QUALITY_APP)  # as a sync does before its first read
    state.faults.update({"paging_churn": {"add": 2, "delete": 2}})  # after every page, forever
    try:
        _full_read(services, fetcher, source_id, DEFECTS_TABLE)  # must not fail "forever"
    finally:
        state.faults.update({"paging_churn": None})
    cached = _cached(services, source_id, DEFECTS_TABLE)
    assert len(cached) == len(set(cached))
    assert _deliver(services, inbox, state) > 0
    assert _without_computed(_cached(services, source_id, DEFECTS_TABLE), state, DEFECTS_TABLE) == \
        _without_computed(_truth(state, DEFECTS_TABLE), state, DEFECTS_TABLE)


def test_a_quiet_table_is_read_once(services, sandbox, monkeypatch):
    """No edits: one pass, no re-reads, no batch_get — the floor of API calls is kept."""
    _, state = sandbox
    monkeypatch.setattr(fetch, "RECORDS_PAGE", SMALL_PAGE)
    source_id = _source(services)
    fetcher = Fetcher(services.feishu)
    _full_read(services, fetcher, source_id, PEOPLE_TABLE)
    assert fetcher.calls == 1 + -(-120 // SMALL_PAGE)
    assert _cached(services, source_id, PEOPLE_TABLE) == _truth(state, PEOPLE_TABLE)
