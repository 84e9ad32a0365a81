"""The sandbox's bitable record writes (issue 17), driven through the real lark-oapi client:
round trips that read back like seeded rows, Feishu's limits and codes, client_token
idempotency, write conflicts, rate limits and the write fault knobs."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
import requests

from sandbox.seed import ADS_DAILY_TABLE_ID, DEFECTS_TABLE, PIPELINE_APP_TOKEN, QUALITY_APP
from sandbox.state import SANDBOX_APP_ID, SANDBOX_APP_SECRET

DAY = 1_704_067_200_000  # 2024-01-01 UTC in ms


@pytest.fixture
def lark(sandbox):
    import lark_oapi

    base_url, _ = sandbox
    return (lark_oapi.Client.builder().app_id(SANDBOX_APP_ID).app_secret(SANDBOX_APP_SECRET)
            .domain(base_url).log_level(lark_oapi.LogLevel.ERROR).build())


def _knobs(base_url: str, **values) -> None:
    answer = requests.post(f"{base_url}/sandbox/faults", json=values, timeout=10)
    assert answer.ok, answer.text


def _rows(base_url: str, table_id: str = ADS_DAILY_TABLE_ID, app_token: str = PIPELINE_APP_TOKEN) -> list:
    url = f"{base_url}/sandbox/bitable/tables/{app_token}/{table_id}/rows"
    return requests.get(url, timeout=10).json()["rows"]


def _ad(n: int, **extra) -> dict:
    return {"日期": DAY + n * 86_400_000, "账户ID": f"A{n:03d}", "账户名称": f"账户{n}",
            "计划ID": f"P{n:05d}", "计划名称": f"计划{n}", "消耗": round(n * 1.25, 2), "展示": n * 100,
            "点击": n * 7, "转化": n, **extra}


def _batch_create(lark, rows: list[dict], *, table_id: str = ADS_DAILY_TABLE_ID,
                  app_token: str = PIPELINE_APP_TOKEN, client_token: str | None = None):
    from lark_oapi.api.bitable.v1 import (
        AppTableRecord,
        BatchCreateAppTableRecordRequest,
        BatchCreateAppTableRecordRequestBody,
    )

    builder = BatchCreateAppTableRecordRequest.builder().app_token(app_token).table_id(table_id)
    if client_token:
        builder = builder.client_token(client_token)
    body = BatchCreateAppTableRecordRequestBody.builder().records(
        [AppTableRecord.builder().fields(r).build() for r in rows]).build()
    return lark.bitable.v1.app_table_record.batch_create(builder.request_body(body).build())


def _batch_update(lark, changes: list[tuple[str, dict]], *, table_id: str = ADS_DAILY_TABLE_ID,
                  app_token: str = PIPELINE_APP_TOKEN):
    from lark_oapi.api.bitable.v1 import (
        AppTableRecord,
        BatchUpdateAppTableRecordRequest,
        BatchUpdateAppTableRecordRequestBody,
    )

    body = BatchUpdateAppTableRecordRequestBody.builder().records(
        [AppTableRecord.builder().record_id(rid).fields(f).build() for rid, f in changes]).build()
    return lark.bitable.v1.app_table_record.batch_update(
        BatchUpdateAppTableRecordRequest.builder().app_token(app_token).table_id(table_id).request_body(body).build())


def _batch_delete(lark, ids: list[str], *, table_id: str = ADS_DAILY_TABLE_ID):
    from lark_oapi.api.bitable.v1 import (
        BatchDeleteAppTableRecordRequest,
        BatchDeleteAppTableRecordRequestBody,
    )

    body = BatchDeleteAppTableRecordRequestBody.builder().records(ids).build()
    return lark.bitable.v1.app_table_record.batch_delete(
        BatchDeleteAppTableRecordRequest.builder().app_token(PIPELINE_APP_TOKEN).table_id(table_id)
        .request_body(body).build())


def _listed(lark, table_id: str = ADS_DAILY_TABLE_ID, app_token: str = PIPELINE_APP_TOKEN) -> dict[str, dict]:
    from lark_oapi.api.bitable.v1 import ListAppTableRecordRequest

    answer = lark.bitable.v1.app_table_record.list(
        ListAppTableRecordRequest.builder().app_token(app_token).table_id(table_id).page_size(500).build())
    assert answer.code == 0, answer.msg
    return {r.record_id: r.fields for r in answer.data.items or []}


def _fetched(lark, ids: list[str]) -> dict[str, dict]:
    from lark_oapi.api.bitable.v1 import BatchGetAppTableRecordRequest, BatchGetAppTableRecordRequestBody

    answer = lark.bitable.v1.app_table_record.batch_get(
        BatchGetAppTableRecordRequest.builder().app_token(PIPELINE_APP_TOKEN).table_id(ADS_DAILY_TABLE_ID)
        .request_body(BatchGetAppTableRecordRequestBody.builder().record_ids(ids).build()).build())
    assert answer.code == 0, answer.msg
    return {r.record_id: r.fields for r in answer.data.records}


TEXT_FIELDS = ("账户ID", "账户名称", "计划ID", "计划名称")


# -- round trips --------------------------------------------------------------------------------


def test_written_rows_read_back_like_seeded_ones(sandbox, lark):
    base_url, _ = sandbox
    rows = [_ad(n) for n in range(1, 4)]

    created = _batch_create(lark, rows)

    assert created.code == 0, created.msg
    ids = [r.record_id for r in created.data.records]
    assert len(set(ids)) == 3 and all(i.startswith("rec") for i in ids)
    assert [r.fields for r in created.data.records] == rows
    # The records list (text as plain strings) shows exactly what was written; batch_get shows
    # text as segments, as it does for every seeded table.
    assert _listed(lark) == dict(zip(ids, rows, strict=True))
    segments = {rid: {k: [{"text": v, "type": "text"}] if k in TEXT_FIELDS else v for k, v in row.items()}
                for rid, row in zip(ids, rows, strict=True)}
    assert _fetched(lark, ids) == segments
    # the same value types as a seeded table's text, number and date cells
    seeded = _listed(lark, "tblPeople00000001", QUALITY_APP)
    sample = next(iter(seeded.values()))
    assert (type(sample["姓名"]), type(sample["职级"]), type(sample["入职日期"])) == (str, int, int)
    assert (type(rows[0]["账户ID"]), type(rows[0]["展示"]), type(rows[0]["日期"])) == (str, int, int)

    # lark-oapi drops None values from request bodies (core/json.py filter_null): "" clears text
    updated = _batch_update(lark, [(ids[0], {"消耗": 99.5, "计划名称": "改名"}), (ids[1], {"计划名称": ""})])
    assert updated.code == 0, updated.msg
    assert updated.data.records[0].fields == {**rows[0], "消耗": 99.5, "计划名称": "改名"}
    deleted = _batch_delete(lark, [ids[2]])
    assert deleted.code == 0, deleted.msg
    assert [(r.record_id, r.deleted) for r in deleted.data.records] == [(ids[2], True)]

    expected = {ids[0]: {**rows[0], "消耗": 99.5, "计划名称": "改名"},
                ids[1]: {k: v for k, v in rows[1].items() if k != "计划名称"}}  # a cleared cell is left out
    assert _listed(lark) == expected
    assert {r["record_id"]: r["fields"] for r in _rows(base_url)} == expected
    writes = requests.get(f"{base_url}/sandbox/bitable/writes", timeout=10).json()
    assert writes["calls"] == {"batch_create": {"0": 1}, "batch_update": {"0": 1}, "batch_delete": {"0": 1}}


def test_single_record_create_update_delete(sandbox, lark):
    from lark_oapi.api.bitable.v1 import (
        AppTableRecord,
        CreateAppTableRecordRequest,
        DeleteAppTableRecordRequest,
        UpdateAppTableRecordRequest,
    )

    base_url, _ = sandbox
    api = lark.bitable.v1.app_table_record
    made = api.create(CreateAppTableRecordRequest.builder().app_token(PIPELINE_APP_TOKEN)
                      .table_id(ADS_DAILY_TABLE_ID)
                      .request_body(AppTableRecord.builder().fields(_ad(1)).build()).build())
    assert made.code == 0, made.msg
    rid = made.data.record.record_id
    changed = api.update(UpdateAppTableRecordRequest.builder().app_token(PIPELINE_APP_TOKEN)
                         .table_id(ADS_DAILY_TABLE_ID).record_id(rid)
                         .request_body(AppTableRecord.builder().fields({"点击": 8}).build()).build())
    assert changed.code == 0 and changed.data.record.fields == {**_ad(1), "点击": 8}
    assert _rows(base_url) == [{"record_id": rid, "fields": {**_ad(1), "点击": 8}}]
    gone = api.delete(DeleteAppTableRecordRequest.builder().app_token(PIPELINE_APP_TOKEN)
                      .table_id(ADS_DAILY_TABLE_ID).record_id(rid).build())
    assert (gone.code, gone.data.deleted, gone.data.record_id) == (0, True, rid)
    assert _rows(base_url) == []
    again = api.delete(DeleteAppTableRecordRequest.builder().app_token(PIPELINE_APP_TOKEN)
                       .table_id(ADS_DAILY_TABLE_ID).record_id(rid).build())
    assert again.code == 1254043


def test_control_endpoint_creates_target_tables(sandbox, lark):
    from lark_oapi.api.bitable.v1 import ListAppTableFieldRequest

    base_url, _ = sandbox
    made = requests.post(f"{base_url}/sandbox/bitable/tables", json={
        "app_token": "bascnTestTarget01", "name": "客户", "fields": [
            {"field_name": "名称", "type": 1}, {"field_name": "余额", "type": 2},
            {"field_name": "等级", "type": 3, "options": ["A", "B"]}, {"field_name": "有效", "type": 7}]},
        timeout=10).json()
    assert made["app_token"] == "bascnTestTarget01" and made["table_id"].startswith("tbl")
    fields = lark.bitable.v1.app_table_field.list(
        ListAppTableFieldRequest.builder().app_token(made["app_token"]).table_id(made["table_id"]).build())
    assert [(f.field_name, f.type, f.is_primary) for f in fields.data.items] == [
        ("名称", 1, True), ("余额", 2, False), ("等级", 3, False), ("有效", 7, False)]
    row = {"名称": "甲", "余额": 10.5, "等级": "C", "有效": True}  # a new option is created
    answer = _batch_create(lark, [row], table_id=made["table_id"], app_token=made["app_token"])
    assert answer.code == 0, answer.msg
    assert [r["fields"] for r in _rows(base_url, made["table_id"], made["app_token"])] == [row]
    assert requests.post(f"{base_url}/sandbox/bitable/tables", json={"name": "x", "fields": [
        {"field_name": "a", "type": 99}]}, timeout=10).status_code == 400


# -- limits and codes ----------------------------------------------------------------------------


def test_a_thousand_records_a_call_and_five_hundred_deletes(sandbox, lark):
    base_url, _ = sandbox
    too_many = _batch_create(lark, [_ad(n) for n in range(1001)])
    assert (too_many.code, too_many.raw.status_code) == (1254104, 200)
    assert _rows(base_url) == []
    ids = [r.record_id for r in _batch_create(lark, [_ad(n) for n in range(1000)]).data.records]
    assert len(ids) == 1000
    assert _batch_update(lark, [(i, {"转化": 1}) for i in ids] + [(ids[0], {"转化": 2})]).code == 1254104

    assert _batch_delete(lark, ids[:501]).code == 1254104
    assert len(_rows(base_url)) == 1000
    assert _batch_delete(lark, ids[:500]).code == 0
    assert len(_rows(base_url)) == 500


def test_unknown_fields_and_wrong_values_are_refused_with_feishus_codes(sandbox, lark):
    base_url, _ = sandbox
    cases = [
        ({"渠道": "x"}, 1254045),  # FieldNameNotFound
        ({"账户ID": 123}, 1254060),  # TextFieldConvFail
        ({"消耗": "12.5"}, 1254061),  # NumberFieldConvFail
        ({"展示": True}, 1254061),
        ({"日期": "2024-01-01"}, 1254064),  # DatetimeFieldConvFail
        ({"日期": 1.5}, 1254064),
    ]
    for fields, code in cases:
        answer = _batch_create(lark, [_ad(1), {**_ad(2), **fields}])
        assert (answer.code, answer.raw.status_code) == (code, 200), (fields, answer.msg)
    assert _rows(base_url) == []  # one bad record: nothing of the call is applied

    # a seeded table's other types
    for fields, code, status in [({"严重程度": 3}, 1254062, 200), ({"是否闭环": "yes"}, 1254065, 200),
                                 ({"标签": "前端"}, 1254063, 200), ({"评分": "x"}, 1254015, 400),
                                 ({"自动编号": "9"}, 1254015, 400), ({"创建时间": DAY}, 1254015, 400)]:
        answer = _batch_create(lark, [{"问题编号": "BUG-9999", **fields}], table_id=DEFECTS_TABLE,
                               app_token=QUALITY_APP)
        assert (answer.code, answer.raw.status_code) == (code, status), (fields, answer.msg)
    missing = _batch_update(lark, [("recDoesNotExist01", {"转化": 1})])
    assert missing.code == 1254043  # RecordIdNotFound
    assert _batch_delete(lark, ["recDoesNotExist01"]).code == 1254043
    assert _batch_create(lark, [_ad(1)], table_id="tblNope0000000001").code == 1254041


# -- idempotency ---------------------------------------------------------------------------------


def test_the_same_client_token_writes_once(sandbox, lark):
    base_url, _ = sandbox
    token = str(uuid.uuid4())
    first = _batch_create(lark, [_ad(1), _ad(2)], client_token=token)
    second = _batch_create(lark, [_ad(1), _ad(2)], client_token=token)

    assert first.code == second.code == 0
    assert [r.record_id for r in second.data.records] == [r.record_id for r in first.data.records]
    assert len(_rows(base_url)) == 2
    conflict = _batch_create(lark, [_ad(3)], client_token=token)  # the token on another request
    assert (conflict.code, conflict.raw.status_code) == (1255006, 400)
    bad = _batch_create(lark, [_ad(3)], client_token="not-a-uuid")
    assert (bad.code, bad.raw.status_code) == (1254037, 400)
    assert len(_rows(base_url)) == 2


# -- concurrency and rates -------------------------------------------------------------------------


def test_simultaneous_writes_to_one_table_conflict_and_the_loser_applies_nothing(sandbox, lark):
    base_url, state = sandbox
    _knobs(base_url, bitable_write_latency_ms=400)
    _batch_create(lark, [_ad(0)])  # fetch the tenant token before the race
    start = threading.Barrier(2)
    answers: dict[int, object] = {}

    def write(n: int) -> None:
        start.wait()
        answers[n] = _batch_create(lark, [_ad(n), _ad(n + 10)])

    threads = [threading.Thread(target=write, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    codes = sorted(a.code for a in answers.values())
    assert codes == [0, 1254291]
    loser = next(n for n, a in answers.items() if a.code == 1254291)
    written = {r["fields"]["账户ID"] for r in _rows(base_url)}
    assert f"A{loser:03d}" not in written and len(written) == 3
    assert state.bitable_writes.conflicts == 1
    # another table is not held by it
    other = requests.post(f"{base_url}/sandbox/bitable/tables", json={
        "name": "别的表", "fields": [{"field_name": "名称", "type": 1}]}, timeout=10).json()
    assert _batch_create(lark, [{"名称": "x"}], table_id=other["table_id"]).code == 0


def test_too_many_writes_a_second_answer_1254290_and_the_endpoint_limit_429(sandbox, lark):
    base_url, _ = sandbox
    _knobs(base_url, bitable_write_latency_ms=0, bitable_writes_per_second=2)
    codes = [_batch_create(lark, [_ad(n)]).code for n in range(3)]
    assert codes == [0, 0, 1254290]
    assert len(_rows(base_url)) == 2

    _knobs(base_url, bitable_writes_per_second=0, bitable_write_api_qps=1)
    answer = _batch_update(lark, [(_rows(base_url)[0]["record_id"], {"转化": 5})])
    assert answer.code == 0
    limited = _batch_update(lark, [(_rows(base_url)[0]["record_id"], {"转化": 6})])
    assert (limited.code, limited.raw.status_code) == (99991400, 429)
    assert limited.raw.headers["x-ogw-ratelimit-reset"] == "1"
    assert _rows(base_url)[0]["fields"]["转化"] == 5


# -- fault knobs -----------------------------------------------------------------------------------


def test_the_write_error_rate_refuses_that_share_of_writes_and_applies_nothing_for_them(sandbox, lark):
    base_url, _ = sandbox
    _knobs(base_url, bitable_write_latency_ms=0, bitable_writes_per_second=0, bitable_write_error_rate=0.5)
    answers = [_batch_create(lark, [_ad(n)]) for n in range(40)]
    outcomes = Counter((a.code, a.raw.status_code) for a in answers)
    failed = 40 - outcomes[(0, 200)]
    assert 8 <= failed <= 32, outcomes
    assert set(outcomes) <= {(0, 200), (1254290, 200), (99991400, 429), (1255040, 504)}
    assert len(set(outcomes)) == 4  # every kind shows up
    assert len(_rows(base_url)) == outcomes[(0, 200)]

    _knobs(base_url, bitable_write_error_rate=0, bitable_write_error_count=2,
           bitable_write_error_kinds=["5xx"])
    codes = [(a.code, a.raw.status_code) for a in (_batch_create(lark, [_ad(n)]) for n in range(3))]
    assert codes == [(1255040, 504), (1255040, 504), (0, 200)]
    bad = requests.post(f"{base_url}/sandbox/faults", json={"bitable_write_error_kinds": ["boom"]},
                        timeout=10)
    assert bad.status_code == 400


def test_a_write_applied_then_answered_5xx_is_recovered_by_its_client_token(sandbox, lark):
    base_url, _ = sandbox
    _knobs(base_url, bitable_write_applied_then_5xx_count=1)
    token = str(uuid.uuid4())
    lost = _batch_create(lark, [_ad(1), _ad(2)], client_token=token)

    assert (lost.code, lost.raw.status_code) == (1255040, 504)
    written = _rows(base_url)
    assert len(written) == 2  # applied although the answer was a 5xx
    retry = _batch_create(lark, [_ad(1), _ad(2)], client_token=token)
    assert retry.code == 0
    assert [r.record_id for r in retry.data.records] == [r["record_id"] for r in written]
    assert len(_rows(base_url)) == 2

    _knobs(base_url, bitable_write_applied_then_5xx_rate=1.0)
    assert _batch_create(lark, [_ad(3)]).raw.status_code == 504
    assert len(_rows(base_url)) == 3


def test_writes_send_record_changed_events_to_a_subscribed_app(sandbox, lark, monkeypatch):
    _, state = sandbox
    sent: list[dict] = []
    monkeypatch.setattr(state.sender, "send", lambda document, encrypted=True: sent.append(document))
    _batch_create(lark, [_ad(1)])
    assert sent == []  # not subscribed: Feishu notifies subscribed files only
    state.subscriptions.add(PIPELINE_APP_TOKEN)

    ids = [r.record_id for r in _batch_create(lark, [_ad(2), _ad(3)]).data.records]
    _batch_update(lark, [(ids[0], {"转化": 9})])
    _batch_delete(lark, [ids[1]])
    _batch_create(lark, [{"渠道": "x"}])  # refused: no event

    assert [d["header"]["event_type"] for d in sent] == ["drive.file.bitable_record_changed_v1"] * 3
    assert [[(a["record_id"], a["action"]) for a in d["event"]["action_list"]] for d in sent] == [
        [(ids[0], "record_added"), (ids[1], "record_added")], [(ids[0], "record_edited")],
        [(ids[1], "record_deleted")]]
    assert {d["event"]["table_id"] for d in sent} == {ADS_DAILY_TABLE_ID}
