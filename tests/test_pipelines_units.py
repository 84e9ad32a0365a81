"""Pipelines (issue 17): the pure parts (spec, schedules, values, planning, verification, the
summary) directly; the run state, sources and the runner against real SQLite and PostgreSQL and
a real Redis, with an in-memory table (tests/pipeline_helpers.py) standing in for the sandbox's
bitable writes; the table reads against the sandbox."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text, update

from bot import callables
from bot.db import init_schema
from bot.models import Alert, Pipeline, PipelineRun
from bot.pipelines import cadence, runner, runs, schedule, sources, store, summary, values
from bot.pipelines.context import FetchContext, FetchResult, ProviderTokensMissing
from bot.pipelines.plan import DuplicateKey, Existing, Plan, Update, chunks, plan_upsert
from bot.pipelines.spec import SpecError, check, parse, parse_bitable_url
from bot.pipelines.target import TableBusy, write_lock
from bot.pipelines.values import CHECKBOX, DATE, MULTI_SELECT, NUMBER, SINGLE_SELECT, TEXT, URL, FieldInfo
from bot.pipelines.verify import verify
from bot.queue import QueueName
from bot.services import Services, build_services
from tests import pipeline_helpers
from tests.pipeline_helpers import AD_FIELDS, FakeTable

SH = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 2, 15)
DAY_MS = 1_771_084_800_000  # 2026-02-15 00:00 in Shanghai (2026-02-14 16:00 UTC)
MODULES = ["bot.pipelines.examples", "tests.pipeline_helpers"]
APP, TABLE = "bascnAdsApp000001", "tblAdSpend000001"


def ad_spec(**overrides) -> dict:
    """The ad-spend pipeline; under another name, on a table of its own (one table, one pipeline)."""
    name = overrides.get("name", "ad-spend")
    table = TABLE if name == "ad-spend" else "tbl" + hashlib.sha1(name.encode()).hexdigest()[:13]
    spec = {
        "name": "ad-spend",
        "source": {"kind": "python", "callable": "bot.pipelines.examples:demo_ad_spend"},
        "target": f"https://x.feishu.cn/base/{APP}?table={table}&view=vew1",
        "key": ["账户ID", "日期", "计划"],
        "partition": "日期",
        "schedule": "daily 07:00",
        "group_by": "账户ID",
        "sum_fields": ["消耗"],
    }
    spec.update(overrides)
    return spec


# -- spec ---------------------------------------------------------------------------------------


def test_spec_parses_a_bitable_link_and_derives_the_group_label():
    spec = parse(ad_spec())
    assert (spec.target.app_token, spec.target.table_id) == (APP, TABLE)
    assert spec.label == "账户" and spec.lag_days == 1 and spec.schedule == "daily 07:00"
    assert spec.fields_read() == ["账户ID", "日期", "计划", "消耗"]
    again = parse(spec.model_dump_json())  # what the database stores reads back the same
    assert again == spec
    explicit = parse(ad_spec(target={"app_token": APP, "table_id": TABLE}, group_label="广告户"))
    assert explicit.target == spec.target and explicit.label == "广告户"


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": "Ad Spend"}, "name 'Ad Spend'"),
    ({"name": "9ads"}, "starting with a letter"),
    ({"target": "https://x.feishu.cn/wiki/wikcnAbc123?table=tbl1"}, "wiki link"),
    ({"target": f"https://x.feishu.cn/base/{APP}"}, "names no table"),
    ({"target": {"app_token": "bad token!", "table_id": TABLE}}, "not a bitable app token"),
    ({"target": {"app_token": APP, "table_id": "table1"}}, "not a table id"),
    ({"key": []}, "key"),
    ({"key": ["账户ID", "账户ID"]}, "key names a field twice"),
    ({"key": ["账户\nID"]}, "control characters"),
    ({"partition": " 日期"}, "surrounding blanks"),
    ({"schedule": "daily 7am"}, "not `daily HH:MM`"),
    ({"schedule": "every 1m"}, "between 5 minutes and 7 days"),
    ({"chat_id": "chat-1"}, "not a chat id"),
    ({"source": {"kind": "sql", "query": "DELETE FROM alerts"}}, "one SELECT"),
    ({"source": {"kind": "sql", "query": "SELECT 1; DROP TABLE alerts"}}, "one statement"),
    ({"source": {"kind": "sql", "query": "SELECT * FROM ads"}}, "use :day"),
    ({"source": {"kind": "shell", "command": "ls"}}, "source"),
    ({"surprise": 1}, "surprise"),
])
def test_spec_refuses_what_cannot_work(changes, message):
    with pytest.raises(SpecError) as refused:
        parse(ad_spec(**changes))
    assert message in str(refused.value)


def test_sql_source_with_day_and_comments():
    spec = parse(ad_spec(source={"kind": "sql", "query": "-- yesterday\nSELECT * FROM ads WHERE d = :day;"}))
    assert spec.source.uses_day()
    query = "WITH x AS (SELECT 1 AS a) SELECT a FROM x"
    mirror = parse(ad_spec(partition=None, source={"kind": "sql", "query": query, "url": "sqlite:///other.db"}))
    assert mirror.partition is None and mirror.source.url == "sqlite:///other.db"
    with pytest.raises(SpecError, match="not an SQLAlchemy database URL"):
        parse(ad_spec(source={"kind": "sql", "query": "SELECT :day", "url": "not a url"}))


def test_python_sources_must_come_from_allowed_modules():
    check(parse(ad_spec()), MODULES)  # the example is allowed and loads
    for path, reason in (("os:system", "outside PIPELINE_MODULES"),
                         ("subprocess.run", "outside PIPELINE_MODULES"),
                         ("bot.pipelines.examples_evil:x", "outside PIPELINE_MODULES"),
                         ("bot.pipelines.examples:../../x", "outside PIPELINE_MODULES"),
                         ("bot.pipelines.examples:missing", "cannot be loaded"),
                         ("bot.pipelines.examples:DEMO_ACCOUNTS", "not callable")):
        with pytest.raises(SpecError, match=reason):
            check(parse(ad_spec(source={"kind": "python", "callable": path})), MODULES)


def test_the_shared_callable_resolver():
    allowed = callables.prefixes(" bot.coze.examples , pipelines ,")
    assert allowed == ["bot.coze.examples", "pipelines"]
    assert callables.is_allowed("pipelines.ads:fetch", allowed)
    assert callables.is_allowed("pipelines:fetch", allowed)
    assert callables.is_allowed("bot.coze.examples.customer_name_code", allowed)
    assert not callables.is_allowed("pipelines_evil:fetch", allowed)
    assert not callables.is_allowed("pipelines", allowed)  # a module, no function
    assert not callables.is_allowed("pipelines.ads:fe tch", allowed)
    from bot.coze.examples import customer_name_code

    assert callables.load("bot.coze.examples:customer_name_code") is customer_name_code
    assert callables.problem("os:system", allowed, "X_MODULES") == "callable 'os:system' is outside X_MODULES"


def test_bitable_links():
    assert parse_bitable_url(f"https://li.feishu.cn/base/{APP}?table={TABLE}&view=vewX") == (APP, TABLE)
    assert parse_bitable_url(f"https://x.larksuite.com/base/{APP}/?from=1&table={TABLE}") == (APP, TABLE)
    with pytest.raises(ValueError, match="not a link"):
        parse_bitable_url("base/abc?table=tbl1")


# -- schedules ----------------------------------------------------------------------------------


def at(text_: str, zone: ZoneInfo = SH) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=zone)


def test_daily_schedule_across_midnight_in_shanghai():
    ran = at("2026-02-15 07:00")
    due = cadence.next_due("daily 07:00", ran, at("2026-02-15 08:00"), SH)
    assert due == at("2026-02-16 07:00").astimezone(UTC)
    assert due > at("2026-02-16 06:59")  # not yet at 06:59 …
    assert due <= at("2026-02-16 07:00")  # … due at 07:00
    # the last run at 23:30 UTC is 07:30 the next morning in Shanghai: the next slot is a day on
    late = datetime(2026, 2, 15, 23, 30, tzinfo=UTC)
    assert cadence.next_due("daily 07:00", late, late, "Asia/Shanghai") == at("2026-02-17 07:00")
    # created in the evening: the next morning, not at once
    evening = at("2026-02-15 21:00")
    assert cadence.next_due("daily 07:00", evening, evening) == at("2026-02-16 07:00")
    # never ran: due now
    now = at("2026-02-15 12:00")
    assert cadence.next_due("daily 07:00", None, now) == now
    # the cron was down for three days: one run, recorded against the latest slot
    assert cadence.next_due("daily 07:00", at("2026-02-12 07:00"), now) == at("2026-02-13 07:00")
    assert cadence.latest_slot("daily 07:00", now) == at("2026-02-15 07:00")
    assert cadence.latest_slot("daily 07:00", at("2026-02-15 06:00")) == at("2026-02-14 07:00")
    assert cadence.local_today(datetime(2026, 2, 14, 16, 30, tzinfo=UTC), SH) == DAY  # 00:30 local


def test_daily_schedule_over_a_dst_jump_and_every():
    ny = ZoneInfo("America/New_York")  # 2026-03-08 02:00 → 03:00
    due = cadence.next_due("daily 02:30", at("2026-03-07 02:30", ny), at("2026-03-07 03:00", ny), ny)
    assert due.astimezone(ny).date() == date(2026, 3, 8) and due == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert cadence.next_due("daily 02:30", due, due, ny) == at("2026-03-09 02:30", ny)
    last = at("2026-02-15 07:00")
    assert cadence.next_due("every 30m", last, last) == last + timedelta(minutes=30)
    assert cadence.next_due("every 2h", last, last) == last + timedelta(hours=2)
    assert cadence.latest_slot("every 2h", last) == last
    assert cadence.parse_schedule("Daily  7:05") == cadence.Daily(datetime(2000, 1, 1, 7, 5).time())
    with pytest.raises(ValueError, match="aware"):
        cadence.next_due("every 2h", datetime(2026, 1, 1), datetime(2026, 1, 1))


def test_the_days_a_scheduled_run_covers():
    # yesterday, normally; the missed days after an outage, at most `catch_up`
    assert cadence.scheduled_days(DAY, 1, date(2026, 2, 13), 7) == (date(2026, 2, 14), date(2026, 2, 14))
    assert cadence.scheduled_days(DAY, 1, date(2026, 2, 10), 7) == (date(2026, 2, 11), date(2026, 2, 14))
    assert cadence.scheduled_days(DAY, 1, date(2026, 1, 1), 7) == (date(2026, 2, 8), date(2026, 2, 14))
    assert cadence.scheduled_days(DAY, 1, None, 7) == (date(2026, 2, 14), date(2026, 2, 14))
    # already written (an hourly schedule): that day again
    assert cadence.scheduled_days(DAY, 0, DAY, 7) == (DAY, DAY)
    assert cadence.days_between(date(2026, 2, 27), date(2026, 3, 1)) == [
        date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1)]
    with pytest.raises(ValueError, match="ends"):
        cadence.days_between(DAY, date(2026, 2, 1))


# -- values ---------------------------------------------------------------------------------------

F = {f.name: f for f in (FieldInfo("t", TEXT), FieldInfo("n", NUMBER), FieldInfo("s", SINGLE_SELECT),
                         FieldInfo("m", MULTI_SELECT), FieldInfo("d", DATE), FieldInfo("c", CHECKBOX),
                         FieldInfo("u", URL), FieldInfo("f", 20), FieldInfo("p", 13))}


@pytest.mark.parametrize(("name", "value", "cell"), [
    ("t", "账户A", "账户A"), ("t", 12, "12"), ("t", 12.0, "12"), ("t", Decimal("12.50"), "12.50"),
    ("t", "", None), ("t", DAY, "2026-02-15"), ("p", "13800138000", "13800138000"),
    ("n", 3, 3), ("n", 2.5, 2.5), ("n", 4.0, 4), ("n", Decimal("10.50"), 10.5), ("n", Decimal("7.000"), 7),
    ("n", "1,234.5", 1234.5), ("n", None, None),
    ("s", "抖音", "抖音"), ("m", ["a", "b"], ["a", "b"]), ("m", "a", ["a"]), ("m", [], None),
    ("d", DAY, DAY_MS), ("d", datetime(2026, 2, 15, 8, 30), DAY_MS + 8.5 * 3_600_000),
    ("d", datetime(2026, 2, 15, 0, 0, tzinfo=UTC), DAY_MS + 8 * 3_600_000), ("d", "2026-02-15", DAY_MS),
    ("d", DAY_MS, DAY_MS),
    ("c", True, True), ("c", 0, False), ("c", None, False),
    ("u", "https://a.b/c", {"link": "https://a.b/c", "text": "https://a.b/c"}),
])
def test_python_values_to_cells(name, value, cell):
    assert values.to_cell(value, F[name], SH) == cell
    # and what a read of that cell gives back compares equal: a re-run writes nothing
    assert values.from_read(cell, F[name]) == cell


@pytest.mark.parametrize(("name", "value", "message"), [
    ("n", True, "boolean"), ("n", "abc", "not a number"), ("n", float("nan"), "finite"),
    ("d", 1_771_084_800, "looks like seconds"), ("d", "15/02/2026", "ISO date"), ("c", "yes", "checkbox"),
    ("t", {"a": 1}, "not text"), ("m", 5, "list of options"), ("f", 1, "formula field"),
])
def test_values_a_field_cannot_take(name, value, message):
    with pytest.raises(values.ValueProblem, match=message):
        values.to_cell(value, F[name], SH)


def test_feishu_read_shapes_normalise():
    segments = [{"type": "text", "text": "账户"}, {"type": "text", "text": "A"}]
    assert values.from_read(segments, F["t"]) == "账户A"
    assert values.from_read([{"type": "mention", "text": "@张三", "token": "ou_1"}], F["t"]) == "@张三"
    assert values.from_read(12.0, F["n"]) == 12 and isinstance(values.from_read(12.0, F["n"]), int)
    assert values.from_read(0.1 + 0.2, F["n"]) == 0.1 + 0.2
    assert values.from_read(float(DAY_MS), F["d"]) == DAY_MS
    assert values.from_read(None, F["c"]) is False and values.from_read(None, F["t"]) is None
    assert values.from_read({"link": "https://a", "text": None}, F["u"]) == {"link": "https://a", "text": "https://a"}
    # an unexpected shape is kept as is: it compares unequal and gets rewritten, never wrongly kept
    assert values.from_read({"odd": 1}, F["n"]) == {"odd": 1}
    # a record as read: every asked-for field present, an absent checkbox unchecked
    read = values.read_fields({"t": [{"text": "x"}]}, F, ["t", "n", "c", "nope"])
    assert read == {"t": "x", "n": None, "c": False}


def test_rows_naming_a_column_the_table_lacks_are_refused_naming_it():
    with pytest.raises(values.ValueProblem) as refused:
        values.convert_rows([{"账户ID": "a1"}, {"账户ID": "a2", "点击量": 5}], AD_FIELDS, SH,
                            label="2026-02-15")
    message = str(refused.value)
    assert "2026-02-15 row 2" in message and "'点击量' is not a field of the target table" in message
    assert "账户ID" in message  # the fields it does have are listed
    with pytest.raises(values.ValueProblem, match=r"row 1, column '消耗' \(number\): 'many' is not a number"):
        values.convert_rows([{"消耗": "many"}], AD_FIELDS, SH)
    with pytest.raises(values.ValueProblem, match="not a mapping"):
        values.convert_rows([["a1", 3]], AD_FIELDS, SH)  # type: ignore[list-item]


def test_partition_stamping_and_days():
    date_field, text_field = AD_FIELDS["日期"], FieldInfo("日", TEXT)
    rows = values.stamp_day([{"账户ID": "a"}, {"账户ID": "b", "日期": DAY_MS + 3_600_000}], date_field, DAY,
                            SH)
    assert [r["日期"] for r in rows] == [DAY_MS, DAY_MS + 3_600_000]
    with pytest.raises(values.ValueProblem, match="not 2026-02-15"):
        values.stamp_day([{"日期": DAY_MS - 1}], date_field, DAY, SH)  # 23:59:59.999 the day before
    assert values.stamp_day([{}], text_field, DAY, SH) == [{"日": "2026-02-15"}]
    assert values.partition_day("2026/02/15", text_field, SH) == DAY
    assert values.partition_day("someday", text_field, SH) is None
    assert values.partition_day(DAY_MS + 86_399_999, date_field, SH) == DAY


def test_target_check_names_every_problem():
    problems = values.check_target(AD_FIELDS, key=["账户ID", "汇总", "客户"], partition="消耗",
                                   group_by="分组", sum_fields=["计划", "花费"])
    assert problems == [
        "key field '汇总' is a formula field, which pipelines do not write",
        "key field '客户' is not a field of the target table",
        "partition field '消耗' is a number field; it must be a date or text field",
        "group_by field '分组' is not a field of the target table",
        "sum field '计划' is a text field, not a number",
        "sum field '花费' is not a field of the target table",
    ]
    assert values.check_target(AD_FIELDS, key=["账户ID"], partition="日期", group_by="账户ID",
                               sum_fields=["消耗"]) == []


# -- planning -------------------------------------------------------------------------------------

KEY = ["账户ID", "日期", "计划"]
D1, D2 = DAY_MS, DAY_MS + 86_400_000


def row(account: str, day_ms: int = D1, plan: str = "p1", spend: float = 1.0, **more) -> dict:
    return {"账户ID": account, "日期": day_ms, "计划": plan, "消耗": spend, **more}


def existing(*rows: dict) -> list[Existing]:
    return [Existing(f"rec{n}", dict(r)) for n, r in enumerate(rows, 1)]


def by_day(cell):
    return values.partition_day(cell, AD_FIELDS["日期"], SH)


def test_plan_creates_updates_only_what_differs_and_a_rerun_plans_nothing():
    table = existing(row("a1", spend=5), row("a2", spend=7, 备注="手工"))
    incoming = [row("a1", spend=5), row("a2", spend=8), row("a3", spend=None)]
    plan = plan_upsert(table, incoming, KEY, {DAY}, partition="日期", scope_of=by_day)
    assert plan.creates == [{"账户ID": "a3", "日期": D1, "计划": "p1"}]  # no value: left out
    assert plan.updates == [Update("rec2", {"消耗": 8})]  # only the changed field; 备注 untouched
    assert plan.deletes == [] and plan.unchanged == 1 and plan.writes == 2
    after = existing(row("a1", spend=5), row("a2", spend=8, 备注="手工"),
                     {"账户ID": "a3", "日期": D1, "计划": "p1"})
    again = plan_upsert(after, incoming, KEY, {DAY}, partition="日期", scope_of=by_day)
    assert again.empty and again.writes == 0 and again.unchanged == 3


def test_plan_clears_a_value_the_source_no_longer_has():
    plan = plan_upsert(existing(row("a1", 备注="旧")), [row("a1", 备注=None)], KEY)
    assert plan.updates == [Update("rec1", {"备注": None})]


def test_partition_owns_its_days_and_leaves_the_others():
    table = existing(row("a1", D1), row("gone", D1), row("a1", D2), row("old", D2),
                     row("a1", D1 + 3_600_000, "p9"))
    plan = plan_upsert(table, [row("a1", D1)], KEY, {DAY}, partition="日期", scope_of=by_day)
    assert sorted(plan.deletes) == ["rec2", "rec5"]  # that day's rows gone from the source
    assert plan.creates == [] and plan.updates == []
    # a mirror (no partition) owns the whole table
    mirror = plan_upsert(table, [row("a1", D1)], KEY)
    assert sorted(mirror.deletes) == ["rec2", "rec3", "rec4", "rec5"]
    # an empty source for the day empties that day only
    emptied = plan_upsert(table, [], KEY, {DAY}, partition="日期", scope_of=by_day)
    assert sorted(emptied.deletes) == ["rec1", "rec2", "rec5"]


def test_a_run_never_touches_a_record_outside_its_days():
    """Review finding: with the partition outside the key, the old plan moved another day's
    record into the run's day (an update of rec1). Records out of scope are now never matched,
    updated or deleted; and the spec refuses such a key (test_spec_requires_the_partition_in_the_key)."""
    table = existing({"订单": "o1", "日期": D2, "金额": 3})
    plan = plan_upsert(table, [{"订单": "o1", "日期": D1, "金额": 3}], ["订单"], {DAY}, partition="日期",
                       scope_of=by_day)
    assert plan.updates == [] and plan.deletes == [] and len(plan.creates) == 1


def test_duplicate_keys():
    with pytest.raises(DuplicateKey, match=r"账户ID='a1', 日期=1771084800000, 计划='p1' twice \(row 3\)"):
        plan_upsert([], [row("a1"), row("a2"), row("a1", spend=2)], KEY)
    with pytest.raises(DuplicateKey, match="row 1 has no value for key field"):
        plan_upsert([], [row("a1", plan=None)], KEY)
    # already twice in the table: the one already right is kept, the others deleted
    table = existing(row("a1", spend=9), row("a1", spend=5), row("a1", spend=7), row("a2"))
    plan = plan_upsert(table, [row("a1", spend=5), row("a2")], KEY)
    assert plan.deletes == ["rec1", "rec3"] and plan.updates == [] and plan.duplicates == 2
    # none right: the first is kept and updated
    plan = plan_upsert(existing(row("a1", spend=9), row("a1", spend=8)), [row("a1", spend=5)], KEY)
    assert plan.deletes == ["rec2"] and plan.updates == [Update("rec1", {"消耗": 5})]


def test_keys_compare_by_value_across_read_shapes():
    # a number key read back as a float, a text key read as segments (normalised before planning)
    fields = {"编号": FieldInfo("编号", NUMBER), "名称": FieldInfo("名称", TEXT)}
    read = values.read_fields({"编号": 7.0, "名称": [{"text": "甲"}]}, fields, ["编号", "名称"])
    table = [Existing("rec1", read)]
    assert plan_upsert(table, [{"编号": 7, "名称": "甲"}], ["编号"]).empty


def test_batches_follow_bitable_limits():
    plan = Plan(creates=[{"n": i} for i in range(2500)], updates=[Update(f"r{i}", {}) for i in range(1000)],
                deletes=[f"r{i}" for i in range(1201)])
    assert [len(b) for b in plan.create_batches()] == [1000, 1000, 500]
    assert [len(b) for b in plan.update_batches()] == [1000]
    assert [len(b) for b in plan.delete_batches()] == [500, 500, 201]
    assert plan.writes == 3 + 1 + 3
    assert list(chunks([], 500)) == [] and list(chunks([1, 2, 3], 2)) == [[1, 2], [3]]
    with pytest.raises(ValueError):
        list(chunks([1], 0))


# -- verification and the summary ------------------------------------------------------------------


def test_verification_per_group():
    expected = [row("a1", spend=1.5), row("a1", plan="p2", spend=2), row("a2", spend=3)]
    ok = verify(expected, [dict(r) for r in expected], group_by="账户ID", sum_fields=["消耗"],
                expected_groups=["a1", "a2", "a3"])
    assert ok.ok and ok.groups_ok == 2 and ok.groups_total == 3 and ok.missing_groups == ["a3"]
    assert ok.expected_sums == ok.found_sums == {"消耗": 6.5}
    found = [row("a1", spend=1.5), row("a2", spend=3.25), row("x9")]
    bad = verify(expected, found, group_by="账户ID", sum_fields=["消耗"])
    assert not bad.ok
    assert bad.mismatches("账户") == ["账户 a1：应有 2 条，表中 1 条；消耗 应为 3.5，表中 1.5",
                                      "账户 a2：消耗 应为 3，表中 3.25",
                                      "账户 x9：应有 0 条，表中 1 条；消耗 应为 0，表中 1"]
    # numbers read back as floats still add up; group values read back as floats name the same group
    assert verify([{"g": "7", "v": 0.1}, {"g": "7", "v": 0.2}], [{"g": 7.0, "v": 0.30000000000000004}],
                  group_by="g", sum_fields=["v"]).mismatches() == ["分组 7：应有 2 条，表中 1 条"]


def test_summary_text_is_the_users_log():
    rows = [row(f"acct{n % 6 + 1}", plan=f"p{n}", spend=n) for n in range(13)]
    check_ = verify(rows, rows, group_by="账户ID", sum_fields=["消耗"],
                    expected_groups=[f"acct{n}" for n in range(1, 8)])
    doc = summary.summary_doc("ad-spend", DAY, DAY, summary.Counts(13, 13, 0, 0, 4, 1), check_, label="账户",
                              grouped=True)
    lines = summary.result_lines(doc)
    assert lines[:3] == ["✅ 同步日期：2026-02-15", "成功账户：6/7", "总记录数：13"]
    assert "消耗合计：78" in lines and "写入：新增 13 · 更新 0 · 删除 0（API 调用 4 次）" in lines
    assert "无数据的账户：acct7" in lines
    assert json.loads(json.dumps(doc)) == doc  # stored as JSON as is
    card = summary.result_card(doc)
    assert card["config"] == {"wide_screen_mode": True, "update_multi": True}
    assert card["header"]["template"] == "orange"  # verified, but one account had nothing
    assert card["elements"][0]["text"]["content"].startswith("✅ 同步日期：2026-02-15\n成功账户：6/7")
    ranged = summary.summary_doc("p", DAY, date(2026, 2, 17), summary.Counts(), verify([], []), label="分组",
                                 grouped=False)
    assert summary.result_lines(ranged)[:2] == ["✅ 同步日期：2026-02-15 ~ 2026-02-17", "总记录数：0"]
    failed = summary.failure_card("p", 3, DAY, DAY, "boom")
    assert failed["header"]["template"] == "red" and "boom" in failed["elements"][0]["text"]["content"]


# -- the gateway: bitable's throttle codes are retried ----------------------------------------------


class _Answer:
    def __init__(self, code: int) -> None:
        self.code, self.msg = code, "Write conflict" if code else "success"
        self.raw = SimpleNamespace(status_code=200 if code == 0 else 400, headers={}, content=b"{}")

    def success(self) -> bool:
        return self.code == 0

    def get_log_id(self) -> str:
        return "log-1"


@pytest.mark.parametrize("code", [1254290, 1254291])
def test_bitable_write_throttles_are_retried_then_reported(tmp_path, code):
    from bot.feishu import THROTTLED_CODES, Feishu, FeishuAPIError
    from tests.conftest import make_settings

    assert code in THROTTLED_CODES
    feishu = Feishu(object(), make_settings(tmp_path, feishu_retries=3, feishu_retry_max_wait=0.0), None)
    answers = [_Answer(code), _Answer(code), _Answer(0)]
    assert feishu.call("bitable.v1.app_table_record.batch_create", lambda c, o: answers.pop(0)).code == 0
    assert answers == []
    with pytest.raises(FeishuAPIError) as gave_up:
        feishu.call("bitable.v1.app_table_record.batch_create", lambda c, o: _Answer(code))
    assert (gave_up.value.code, gave_up.value.msg, gave_up.value.attempts) == (code, "Write conflict", 4)
    assert str(gave_up.value) == (f"bitable.v1.app_table_record.batch_create failed: code={code} "
                                  "msg=Write conflict log_id=log-1 (still refused after 4 attempts)")
    # a refusal that is not retried (a bad request) reads as before
    with pytest.raises(FeishuAPIError) as refused:
        feishu.call("bitable.v1.app_table_record.batch_create", lambda c, o: _Answer(1254000))
    assert refused.value.attempts == 1 and "attempts" not in str(refused.value)


# -- the database side ------------------------------------------------------------------------------


@pytest.fixture
def bridge(tmp_path: Path, database_url: str, redis_conn, redis_url: str) -> Iterator[Services]:
    """Services on a fresh database and a real Redis; no sandbox (the table is in memory)."""
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, database_url=database_url, redis_url=redis_url,
                             pipeline_modules=",".join(MODULES), pipeline_reread_delay_seconds=0.0,
                             pipeline_lock_wait_seconds=0.2, pipeline_retry_seconds=60)
    services = build_services(settings)
    init_schema(services.engine)
    pipeline_helpers.FETCHED.clear()
    yield services
    services.close()


def run(services: Services, run_id: int, table: FakeTable, **kw) -> runner.Outcome:
    return runner.run_pipeline(services, run_id, open_table=lambda s, spec: table, **kw)


def test_store_add_list_get_remove(bridge):
    info = store.add(bridge, ad_spec())
    assert info.name == "ad-spend" and info.enabled and info.spec.target.table_id == TABLE
    with pytest.raises(store.PipelineExists):
        store.add(bridge, ad_spec())
    store.add(bridge, ad_spec(schedule="every 2h"), replace=True)
    assert store.get(bridge.engine, "ad-spend").spec.schedule == "every 2h"
    with pytest.raises(SpecError, match="outside PIPELINE_MODULES"):
        store.add(bridge, ad_spec(name="evil", source={"kind": "python", "callable": "os:system"}))
    store.add(bridge, ad_spec(name="b-mirror", partition=None, schedule=None))
    assert [p.name for p in store.list_all(bridge.engine)] == ["ad-spend", "b-mirror"]
    store.set_enabled(bridge.engine, "b-mirror", False)
    assert not store.get(bridge.engine, "b-mirror").enabled
    store.add(bridge, ad_spec(name="b-mirror", partition=None, schedule="every 1h"), replace=True)
    assert not store.get(bridge.engine, "b-mirror").enabled  # replacing the definition keeps it off
    store.remove(bridge.engine, "b-mirror")
    with pytest.raises(store.PipelineNotFound):
        store.get(bridge.engine, "b-mirror")
    with pytest.raises(store.PipelineNotFound):
        store.remove(bridge.engine, "b-mirror")


def test_runs_start_claim_and_one_active_run_per_pipeline(bridge):
    store.add(bridge, ad_spec())
    run_id = runs.start(bridge, "ad-spend", (DAY, date(2026, 2, 17)), "chat", requested_by="ou_1",
                        chat_id="oc_1", message_id="om_1")
    job = bridge.queues[QueueName.PIPELINES].fetch_job(f"pipeline-run-{run_id}")
    assert job is not None and job.func_name == "jobs.pipelines.run_pipeline" and job.args == (run_id,)
    status = runs.status(bridge.engine, run_id)
    assert (status.state, status.triggered_by, status.days_total) == ("queued", "chat", 3)
    assert status.days_fetched == 0
    assert (status.date_from, status.date_to, status.chat_id) == (DAY, date(2026, 2, 17), "oc_1")
    with pytest.raises(runs.RunActive) as active:
        runs.start(bridge, "ad-spend", DAY)
    assert active.value.run_id == run_id
    assert runs.claim(bridge.engine, run_id, stale_seconds=600)
    assert not runs.claim(bridge.engine, run_id, stale_seconds=600)  # a second worker gets nothing
    assert runs.status(bridge.engine, run_id).attempts == 1
    with pytest.raises(runs.RunNotFound):
        runs.status(bridge.engine, 999)
    with pytest.raises(ValueError, match="PIPELINE_MAX_DAYS"):
        runs.run_days(bridge, "ad-spend", (date(2020, 1, 1), DAY))
    # no partition: the whole source once, whatever the range
    store.add(bridge, ad_spec(name="mirror", partition=None))
    assert runs.run_days(bridge, "mirror", (DAY, date(2026, 2, 20))) == [date(2026, 2, 20)]
    assert runs.run_days(bridge, "mirror", None, now=datetime(2026, 2, 16, 1, tzinfo=UTC)) == [DAY]


def test_stalled_and_lost_runs_are_found_for_resuming(bridge):
    engine = bridge.engine
    for name in ("a", "b", "c", "d"):
        store.add(bridge, ad_spec(name=name))
    ids = [runs.create(engine, name, [DAY], "manual") for name in ("a", "b", "c", "d")]
    now = datetime.now(UTC)
    old = now - timedelta(minutes=30)
    with engine.begin() as conn:
        conn.execute(update(PipelineRun).where(PipelineRun.id == ids[0]).values(queued_at=old))  # job lost
        conn.execute(update(PipelineRun).where(PipelineRun.id == ids[1])
                     .values(state="running", heartbeat_at=old))  # worker died
        conn.execute(update(PipelineRun).where(PipelineRun.id == ids[2])
                     .values(state="running", heartbeat_at=now))  # alive
        conn.execute(update(PipelineRun).where(PipelineRun.id == ids[3])
                     .values(state="succeeded", heartbeat_at=old))
    assert runs.resumable(engine, stale_seconds=600, now=now) == ids[:2]
    assert not runs.claim(engine, ids[2], stale_seconds=600)
    assert runs.claim(engine, ids[1], stale_seconds=600)  # the dead worker's run is taken over
    assert not runs.claim(engine, ids[3], stale_seconds=600)
    runs.requeue(engine, ids[1], "busy", count_attempt=False)
    status = runs.status(engine, ids[1])
    assert (status.state, status.attempts, status.error) == ("queued", 0, "busy")
    assert [s.id for s in runs.recent(engine)] == ids[::-1]
    assert [s.id for s in runs.recent(engine, "b")] == [ids[1]]


def test_a_retry_waiting_longer_than_the_stale_time_is_not_taken_for_lost(bridge):
    """A retry queued 30 min out (PIPELINE_RETRY_SECONDS × attempts) is waiting, not lost: the
    cron leaves it alone until its job was due and then some (the old code re-offered it after
    PIPELINE_STALE_SECONDS, cutting the backoff short)."""
    engine = bridge.engine
    store.add(bridge, ad_spec())
    run_id = runs.create(engine, "ad-spend", [DAY], "manual")
    assert runs.claim(engine, run_id, stale_seconds=600)
    runs.requeue(engine, run_id, "Feishu down", delay_seconds=1800)
    now = datetime.now(UTC)
    assert runs.resumable(engine, stale_seconds=600, now=now + timedelta(seconds=700)) == []
    assert runs.resumable(engine, stale_seconds=600, now=now + timedelta(seconds=2000)) == []
    assert runs.resumable(engine, stale_seconds=600, now=now + timedelta(seconds=2500)) == [run_id]
    assert runs.claim(engine, run_id, stale_seconds=600)  # its job came: the wait is over
    with engine.begin() as conn:
        assert conn.scalar(select(PipelineRun.not_before).where(PipelineRun.id == run_id)) is None


def test_a_day_of_ads_is_written_verified_and_a_rerun_writes_nothing(bridge):
    store.add(bridge, ad_spec(chat_id=None))
    table = FakeTable()
    seen: list[tuple[str, int, int]] = []
    run_id = runs.create(bridge.engine, "ad-spend", [DAY], "schedule")
    outcome = run(bridge, run_id, table, progress=lambda *p: seen.append(p))
    assert outcome.state == "succeeded", outcome.text
    assert outcome.text.splitlines()[:3] == ["✅ 同步日期：2026-02-15", "成功账户：6/7", "总记录数：9"]
    assert len(table.records) == 9 and all(r["日期"] == DAY_MS for r in table.rows())
    assert table.writes == [("create", 9)]
    assert table.calls == 1 + 1 + 1 + 1  # fields, read, one batch_create, read back
    assert seen[0] == ("fetch", 1, 1) and seen[-1] == ("write", 9, 0)
    status = runs.status(bridge.engine, run_id)
    assert (status.state, status.fetched, status.created, status.updated, status.deleted, status.calls) == (
        "succeeded", 9, 9, 0, 0, 4)
    assert status.summary["groups_ok"] == 6
    assert status.summary["failed_groups"] == {"demo-7": "示例：接口未返回数据"}
    info = store.get(bridge.engine, "ad-spend")
    assert (info.last_run_id, info.last_run_state, info.covered_through) == (run_id, "succeeded", DAY)
    [stored] = runs.days(bridge.engine, run_id)  # written; the rows, kept for resuming, are dropped
    assert (stored.state, stored.rows, stored.detail["expected_groups"][0]) == ("written", None, "demo-1")

    again = runs.create(bridge.engine, "ad-spend", [DAY], "manual")
    assert run(bridge, again, table).state == "succeeded"
    assert table.writes == [("create", 9)]  # nothing more: every value compared equal
    assert runs.status(bridge.engine, again).calls == 2  # fields and one read


def test_a_day_rewritten_deletes_that_days_leftovers_and_repairs_duplicates(bridge):
    store.add(bridge, ad_spec(source={"kind": "python", "callable": "tests.pipeline_helpers:two_accounts"}))
    table = FakeTable()
    kept = table.put(row("a1", D2, spend=1))  # another day: untouched
    table.put(row("gone", D1))  # that day, no longer in the source
    twin_a = table.put(row("a1", D1, spend=10.5))  # a1 twice (an earlier bug); this one is right
    table.put(row("a1", D1, spend=99))
    wrong = table.put(row("a2", D1, spend=2, 备注="手工备注"))
    run_id = runs.create(bridge.engine, "ad-spend", [DAY], "manual")
    assert run(bridge, run_id, table).state == "succeeded"
    assert set(table.records) == {kept, twin_a, wrong}
    assert table.records[wrong] == row("a2", D1, spend=3, 备注="手工备注")  # only 消耗 changed
    assert sorted(table.writes) == [("delete", 2), ("update", 1)]
    status = runs.status(bridge.engine, run_id)
    assert (status.created, status.updated, status.deleted) == (0, 1, 2)


def test_a_lost_write_is_found_on_reading_back_and_written_again(bridge):
    store.add(bridge, ad_spec(source={"kind": "python", "callable": "tests.pipeline_helpers:two_accounts"}))
    table = FakeTable()
    table.lose_creates = 1  # acknowledged, then gone
    run_id = runs.create(bridge.engine, "ad-spend", [DAY], "manual")
    outcome = run(bridge, run_id, table)
    assert outcome.state == "succeeded" and len(table.records) == 2
    assert table.writes == [("create", 2), ("create", 2)]
    assert runs.status(bridge.engine, run_id).summary["counts"]["rounds"] == 2


def test_a_90_day_backfill_takes_the_fewest_calls_and_resumes_without_refetching(bridge):
    store.add(bridge, ad_spec(source={"kind": "python", "callable": "tests.pipeline_helpers:thirteen_rows"}))
    first, last = date(2025, 11, 18), DAY
    days = cadence.days_between(first, last)
    assert len(days) == 90
    run_id = runs.create(bridge.engine, "ad-spend", days, "manual")
    # a first worker fetched 60 days, then died
    for day in days[:60]:
        ctx = SimpleNamespace(day=day)
        cells = values.convert_rows(pipeline_helpers.thirteen_rows(ctx).rows, AD_FIELDS, SH)  # type: ignore[arg-type]
        runs.store_day(bridge.engine, run_id, day, values.stamp_day(cells, AD_FIELDS["日期"], day, SH),
                       {"expected_groups": [], "failed_groups": {}})
    pipeline_helpers.FETCHED.clear()
    with bridge.engine.begin() as conn:
        conn.execute(update(PipelineRun).values(state="running",
                                                heartbeat_at=datetime.now(UTC) - timedelta(hours=1)))
    assert runs.status(bridge.engine, run_id).days_fetched == 60

    table = FakeTable()
    outcome = run(bridge, run_id, table)
    assert outcome.state == "succeeded", outcome.text
    assert days[60:] == pipeline_helpers.FETCHED  # the 30 days left, and only those
    rows = 90 * 13
    assert len(table.records) == rows
    assert table.writes == [("create", 1000), ("create", 170)]
    # fields + one read of the empty table + ceil(1170/1000) creates + ceil(1170/500) reads back
    assert runs.status(bridge.engine, run_id).calls == 1 + 1 + 2 + 3
    assert outcome.text.splitlines()[:3] == ["✅ 同步日期：2025-11-18 ~ 2026-02-15", "成功账户：6/7",
                                             "总记录数：1170"]


def test_a_column_the_table_lacks_fails_the_run_and_alerts(bridge):
    store.add(bridge, ad_spec(source={"kind": "python", "callable": "tests.pipeline_helpers:unknown_column"}))
    table = FakeTable()
    run_id = runs.create(bridge.engine, "ad-spend", [DAY], "schedule")
    outcome = run(bridge, run_id, table)
    assert outcome.state == "failed" and "column '点击量' is not a field of the target table" in outcome.text
    assert table.writes == []
    status = runs.status(bridge.engine, run_id)
    assert status.state == "failed" and "点击量" in status.error and status.finished_at is not None
    with bridge.sessions() as session:
        [alert] = session.scalars(select(Alert)).all()
    assert alert.kind == "pipeline_failed" and "ad-spend" in alert.message and "点击量" in alert.message
    assert store.get(bridge.engine, "ad-spend").last_run_state == "failed"


def test_a_table_without_the_named_fields_fails_before_fetching(bridge):
    store.add(bridge, ad_spec(key=["账户ID", "日期", "广告组"],
                              source={"kind": "python", "callable": "tests.pipeline_helpers:two_accounts"}))
    outcome = run(bridge, runs.create(bridge.engine, "ad-spend", [DAY], "manual"), FakeTable())
    assert outcome.state == "failed"
    assert outcome.text == "key field '广告组' is not a field of the target table"
    assert pipeline_helpers.FETCHED == []


def test_transient_failures_are_retried_then_fail(bridge):
    store.add(bridge, ad_spec(source={"kind": "python", "callable": "tests.pipeline_helpers:unreachable"}))
    run_id = runs.create(bridge.engine, "ad-spend", [DAY], "schedule")
    scheduled = bridge.queues[QueueName.PIPELINES].scheduled_job_registry
    for attempt in (1, 2):
        outcome = run(bridge, run_id, FakeTable())
        assert outcome.state == "queued" and "ConnectionError" in outcome.text
        status = runs.status(bridge.engine, run_id)
        assert (status.state, status.attempts) == ("queued", attempt)
        assert f"pipeline-run-{run_id}-later" in scheduled.get_job_ids()
    outcome = run(bridge, run_id, FakeTable())
    assert outcome.state == "failed" and "the ad platform did not answer" in outcome.text
    assert runs.status(bridge.engine, run_id).attempts == 3
    assert run(bridge, run_id, FakeTable()).state == "skipped"  # finished: a stray job does nothing


def test_a_table_another_run_is_writing_requeues_without_counting(bridge):
    store.add(bridge, ad_spec(source={"kind": "python", "callable": "tests.pipeline_helpers:two_accounts"}))
    run_id = runs.create(bridge.engine, "ad-spend", [DAY], "manual")
    with write_lock(bridge.redis, APP, TABLE, ttl=30, wait=0):  # another process holds it
        outcome = run(bridge, run_id, FakeTable())
        with pytest.raises(TableBusy), write_lock(bridge.redis, APP, TABLE, ttl=30, wait=0):
            pass
    assert outcome.state == "queued" and "another run is writing" in outcome.text
    status = runs.status(bridge.engine, run_id)
    assert (status.state, status.attempts, status.days_fetched) == ("queued", 0, 1)  # the day is kept
    table = FakeTable()
    assert run(bridge, run_id, table).state == "succeeded" and len(table.records) == 2
    assert pipeline_helpers.FETCHED == [DAY]  # fetched once


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_write_lock_is_renewed_while_a_large_table_is_read(bridge):
    """Reading 1,600 records (4 pages) takes longer than the lock's TTL: each page renews it, so
    the writes that follow still hold the table (the old code renewed only after a batch, found
    the lock gone, and had written its first batch without it)."""
    import time

    from bot.pipelines import writer

    table = FakeTable()
    for n in range(1600):
        table.put({"账户ID": "a", "计划": f"p{n:04d}", "消耗": 1})
    table.page_read = lambda: time.sleep(0.35)
    incoming = [{"账户ID": "a", "计划": f"p{n:04d}", "消耗": 2} for n in range(1600)]
    with write_lock(bridge.redis, APP, TABLE, ttl=1, wait=0) as lock:
        result = writer.write(table, AD_FIELDS, incoming, ["账户ID", "计划"], writer.Scope(), lock,
                              names=["账户ID", "计划", "消耗"])
        assert bridge.redis.exists(f"fb:lock:bitable-write:{APP}:{TABLE}")
    assert (result.updated, result.rounds) == (1600, 1)
    assert table.writes == [("update", 1000), ("update", 600)]
    assert {r["消耗"] for r in table.rows()} == {2}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_rows_the_source_failed_to_give_are_kept_not_deleted(bridge):
    """An account the platform could not fetch, or a day it answered with nothing, keeps its
    rows (the old code deleted them as "no longer in the source"); `delete_when_empty` opts in."""
    trouble = pipeline_helpers.SOURCE_TROUBLE
    source = {"kind": "python", "callable": "tests.pipeline_helpers:two_plans_each"}
    store.add(bridge, ad_spec(source=source))
    table = FakeTable()
    table.put({"账户ID": "a1", "日期": DAY_MS + 86_400_000, "计划": "p9", "消耗": 1})  # another day's

    def run_day() -> runner.Outcome:
        return run(bridge, runs.create(bridge.engine, "ad-spend", [DAY], "manual"), table)

    def accounts() -> list[str]:
        return sorted(r["账户ID"] for r in table.rows() if r["日期"] == DAY_MS)

    try:
        assert run_day().state == "succeeded" and accounts() == ["a1", "a1", "a2", "a2"]
        trouble["failed"] = {"a2"}
        outcome = run_day()
        assert outcome.state == "succeeded" and accounts() == ["a1", "a1", "a2", "a2"]
        assert "保留 2 条" in outcome.text and "获取失败的账户：a2（接口超时）" in outcome.text
        trouble.update(failed=set(), empty=True)
        outcome = run_day()
        assert outcome.state == "succeeded" and accounts() == ["a1", "a1", "a2", "a2"]
        assert "保留 4 条" in outcome.text
        store.add(bridge, ad_spec(source=source, delete_when_empty=True), replace=True)
        assert run_day().state == "succeeded" and accounts() == []
        assert len(table.rows()) == 1  # the other day's row was never touched
        store.add(bridge, ad_spec(name="mirror", source=source, partition=None, key=["账户ID", "计划"]))
        mirror = FakeTable()
        mirror.put({"账户ID": "a1", "计划": "p1", "消耗": 5})
        outcome = run(bridge, runs.create(bridge.engine, "mirror", [DAY], "manual"), mirror)
        assert outcome.state == "succeeded" and len(mirror.rows()) == 1  # an empty source empties nothing
    finally:
        trouble.update(failed=set(), empty=False)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_range_keeps_only_the_empty_days_rows_and_a_mirror_only_the_failed_groups(bridge):
    trouble = pipeline_helpers.SOURCE_TROUBLE
    source = {"kind": "python", "callable": "tests.pipeline_helpers:two_plans_each"}
    store.add(bridge, ad_spec(source=source))
    table = FakeTable()
    next_day = DAY + timedelta(days=1)

    def run_range() -> runner.Outcome:
        return run(bridge, runs.create(bridge.engine, "ad-spend", [DAY, next_day], "manual"), table)

    try:
        assert run_range().state == "succeeded" and len(table.rows()) == 8
        stale = table.put({"账户ID": "a1", "日期": DAY_MS, "计划": "gone", "消耗": 1})  # no longer given
        trouble["empty_days"] = {next_day}  # the platform has nothing for the second day
        outcome = run_range()
        assert outcome.state == "succeeded" and stale not in table.records  # the first day's orphan goes
        assert len(table.rows()) == 8 and "保留 4 条" in outcome.text  # the empty day's four stay
        trouble["empty_days"] = set()

        store.add(bridge, ad_spec(name="mirror", source=source, partition=None, key=["账户ID", "计划"]))
        mirror = FakeTable()
        for account in ("a1", "a2"):
            mirror.put({"账户ID": account, "计划": "old", "消耗": 1})
        trouble["failed"] = {"a2"}
        outcome = run(bridge, runs.create(bridge.engine, "mirror", [DAY], "manual"), mirror)
        assert outcome.state == "succeeded"
        assert sorted((r["账户ID"], r["计划"]) for r in mirror.rows()) == [
            ("a1", "p1"), ("a1", "p2"), ("a2", "old")]  # a1's orphan deleted, a2's kept
        assert "保留 1 条" in outcome.text

        store.add(bridge, ad_spec(name="upserts", source=source, delete_missing=False))
        shared = FakeTable()
        shared.put({"账户ID": "zz", "日期": DAY_MS, "计划": "another's", "消耗": 1})
        outcome = run(bridge, runs.create(bridge.engine, "upserts", [DAY], "manual"), shared)
        assert outcome.state == "succeeded" and len(shared.rows()) == 3 and "保留" not in outcome.text
    finally:
        trouble.update(failed=set(), empty=False, empty_days=set())


def test_one_table_takes_one_pipeline_unless_every_one_only_upserts(bridge):
    """Two pipelines that delete missing rows on one table would delete each other's rows."""
    store.add(bridge, ad_spec())
    with pytest.raises(store.TableTaken, match="'ad-spend' already writes table"):
        store.add(bridge, ad_spec(name="second", target=f"https://x.feishu.cn/base/{APP}?table={TABLE}"))
    with pytest.raises(store.TableTaken):
        store.add(bridge, ad_spec(name="second", target=f"https://x.feishu.cn/base/{APP}?table={TABLE}",
                                  delete_missing=False))
    store.add(bridge, ad_spec(delete_missing=False), replace=True)  # replacing itself is no conflict
    store.add(bridge, ad_spec(name="second", target=f"https://x.feishu.cn/base/{APP}?table={TABLE}",
                              delete_missing=False))
    assert [p.name for p in store.list_all(bridge.engine)] == ["ad-spend", "second"]
    # upsert-only, but keyed differently: one's update (or duplicate removal) would undo the other's rows
    with pytest.raises(store.TableTaken, match="need the same key and partition"):
        store.add(bridge, ad_spec(name="third", target=f"https://x.feishu.cn/base/{APP}?table={TABLE}",
                                  delete_missing=False, key=["账户ID", "日期"]))


def test_adds_at_once_cannot_both_take_one_table(bridge):
    """Eight adds of different pipelines on one table at one instant: exactly one gets it."""
    import threading

    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def add(n: int) -> None:
        barrier.wait()
        try:
            store.add(bridge, ad_spec(name=f"racer-{n}", target=f"https://x.feishu.cn/base/{APP}?table={TABLE}"))
            outcomes.append("added")
        except store.TableTaken:
            outcomes.append("taken")

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["added"] + ["taken"] * 7


def test_a_shown_masked_url_given_back_keeps_the_sealed_password(bridge):
    """`pipeline show` prints the URL masked; a definition edited from it and added with
    --replace keeps the sealed password — and a masked password anywhere else is refused
    (the old code stored the password "***")."""
    url = f"postgresql+psycopg://bridge:{PASSWORD}@db.internal:5432/ads"
    source = {"kind": "sql", "query": 'SELECT 1 AS "账户ID" WHERE :day IS NOT NULL', "url": url}
    store.add(bridge, ad_spec(source=source))
    shown = store.get(bridge.engine, "ad-spend").spec.source.url
    assert shown == "postgresql+psycopg://bridge:***@db.internal:5432/ads"
    store.add(bridge, ad_spec(source={**source, "url": shown}, schedule="daily 08:00"), replace=True)
    assert store.get(bridge.engine, "ad-spend", box=bridge.secret_box).spec.source.url == url
    with pytest.raises(store.MaskedPassword, match="real password"):
        store.add(bridge, ad_spec(source={**source, "url": shown.replace("5432", "5433")}), replace=True)
    assert store.get(bridge.engine, "ad-spend", box=bridge.secret_box).spec.source.url == url


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_write_lock_outlives_one_call_longer_than_its_ttl(bridge):
    """One batch taking 2.5 s (a gateway call riding out throttles) under a 1 s TTL: the lock is
    renewed in the background, so no other writer gets the table meanwhile."""
    import time

    from bot.pipelines import writer

    class SlowTable(FakeTable):
        def create(self, rows):
            time.sleep(2.5)
            with pytest.raises(TableBusy), write_lock(bridge.redis, APP, TABLE, ttl=1, wait=0):
                pass  # another writer still finds the table taken
            return super().create(rows)

    table = SlowTable()
    incoming = [{"账户ID": "a", "计划": f"p{n}", "消耗": n} for n in range(3)]
    with write_lock(bridge.redis, APP, TABLE, ttl=1, wait=0) as lock:
        result = writer.write(table, AD_FIELDS, incoming, ["账户ID", "计划"], writer.Scope(), lock,
                              names=["账户ID", "计划", "消耗"])
    assert (result.created, result.rounds) == (3, 1) and len(table.rows()) == 3
    assert not bridge.redis.exists(f"fb:lock:bitable-write:{APP}:{TABLE}")  # released


def test_provider_tokens_come_from_the_seam(bridge):
    store.add(bridge, ad_spec(provider="oceanengine",
                              source={"kind": "python", "callable": "tests.pipeline_helpers:with_token"}))
    outcome = run(bridge, runs.create(bridge.engine, "ad-spend", [DAY], "manual"), FakeTable())
    assert outcome.state == "failed" and "oceanengine" in outcome.text  # not declared: named in the error

    class Tokens:
        def __init__(self) -> None:
            self.asked: list[tuple[str, str | None]] = []

        def get_valid_token(self, provider: str, *, rejected: str | None = None) -> str:
            self.asked.append((provider, rejected))
            return "fresh" if rejected else "expired"

    tokens = Tokens()
    bridge.provider_tokens = tokens  # type: ignore[attr-defined]
    table = FakeTable()
    assert run(bridge, runs.create(bridge.engine, "ad-spend", [DAY], "manual"), table).state == "succeeded"
    assert tokens.asked == [("oceanengine", None), ("oceanengine", "expired")]
    assert [r["账户ID"] for r in table.rows()] == ["fresh"]
    ctx = FetchContext("x", DAY, None, None)  # type: ignore[arg-type]
    with pytest.raises(ProviderTokensMissing, match="names no provider"):
        ctx.token()


def test_sql_sources_run_read_only(bridge):
    engine = bridge.engine
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE ads (account VARCHAR(10), d DATE, spend NUMERIC(10, 2))"))
        conn.execute(text("INSERT INTO ads VALUES ('a1', '2026-02-15', 10.50), ('a2', '2026-02-15', 3), "
                          "('a1', '2026-02-14', 1)"))
    rows = sources.run_query(engine, 'SELECT account AS "账户ID", spend AS "消耗" FROM ads WHERE d = :day '
                                     "ORDER BY account", DAY)
    # PostgreSQL's NUMERIC arrives as Decimal; SQLite has none and answers floats
    got = [(r["账户ID"], Decimal(str(r["消耗"]))) for r in rows]
    assert got == [("a1", Decimal("10.5")), ("a2", Decimal("3"))]
    assert len(sources.run_query(engine, "SELECT * FROM ads")) == 3  # no :day, nothing bound
    with pytest.raises(Exception, match=r"(?i)read.only|readonly"):
        sources.run_query(engine, "UPDATE ads SET spend = 0")
    for _ in range(6):  # every pooled connection writes again afterwards
        with engine.begin() as conn:
            conn.execute(text("UPDATE ads SET spend = spend + 1 WHERE account = 'a2'"))
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT spend FROM ads WHERE account = 'a2'")) == 9

    store.add(bridge, ad_spec(source={"kind": "sql", "query": 'SELECT account AS "账户ID", \'p1\' AS "计划", '
                                                              'spend AS "消耗" FROM ads WHERE d = :day'}))
    table = FakeTable()
    assert run(bridge, runs.create(bridge.engine, "ad-spend", [DAY], "manual"), table).state == "succeeded"
    assert sorted((r["账户ID"], r["消耗"]) for r in table.rows()) == [("a1", 10.5), ("a2", 9)]


PASSWORD = "s3cret-Pipeline-pw"


def _url_with_password(services: Services) -> str:
    """The bridge's own database under a URL that carries PASSWORD: the tests' PostgreSQL trusts
    any password; SQLite takes `?password=` and ignores it (with a warning)."""
    from sqlalchemy.engine import make_url

    url = make_url(services.settings.effective_database_url)
    if url.get_backend_name() == "sqlite":
        return f"{url.render_as_string(hide_password=False)}?password={PASSWORD}"
    return url.set(password=PASSWORD).render_as_string(hide_password=False)


def _stored_spec(services: Services, name: str) -> str:
    with services.engine.connect() as conn:
        return conn.scalar(select(Pipeline.spec).where(Pipeline.name == name))


@pytest.mark.filterwarnings("ignore:Query string argument")
def test_an_sql_sources_password_is_sealed_at_rest_shown_masked_and_used_by_a_run(bridge):
    from click.testing import CliRunner

    from bot.chat.texts import pipeline_list_text
    from bot.cli.main import main as cli
    from bot.overview import _pipelines
    from tests.test_provider_tokens import _env

    url = _url_with_password(bridge)
    with bridge.engine.begin() as conn:
        conn.execute(text("CREATE TABLE ads (account VARCHAR(10), d DATE, spend NUMERIC(10, 2))"))
        conn.execute(text("INSERT INTO ads VALUES ('a1', '2026-02-15', 10.50), ('a2', '2026-02-15', 3)"))
    query = 'SELECT account AS "账户ID", \'p1\' AS "计划", spend AS "消耗" FROM ads WHERE d = :day'
    store.add(bridge, ad_spec(source={"kind": "sql", "query": query, "url": url}))

    stored = _stored_spec(bridge, "ad-spend")
    assert PASSWORD not in stored and "***" in stored  # sealed at rest, masked beside it
    assert store.get(bridge.engine, "ad-spend", box=bridge.secret_box).spec.source.url == url
    shown = store.get(bridge.engine, "ad-spend").spec.source.url
    assert PASSWORD not in shown and "***" in shown
    table = FakeTable()
    outcome = run(bridge, runs.create(bridge.engine, "ad-spend", [DAY], "manual"), table)
    assert outcome.state == "succeeded", outcome.text  # the run had the real URL
    assert sorted((r["账户ID"], r["消耗"]) for r in table.rows()) == [("a1", 10.5), ("a2", 3)]

    env = _env(bridge)
    for args in (["pipeline", "show", "ad-spend"], ["pipeline", "list"], ["pipeline", "list", "--json"]):
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
        assert "ad-spend" in result.output and PASSWORD not in result.output
    shown_doc = json.loads(CliRunner().invoke(cli, ["pipeline", "show", "ad-spend"], env=env).output)
    assert shown_doc["definition"]["source"]["url"] == shown
    assert PASSWORD not in pipeline_list_text(store.list_all(bridge.engine))
    assert PASSWORD not in json.dumps(_pipelines(bridge.engine), default=str)


@pytest.mark.filterwarnings("ignore:Query string argument")
def test_a_definition_stored_before_sealing_still_loads_and_runs(bridge):
    url = _url_with_password(bridge)
    with bridge.engine.begin() as conn:
        conn.execute(text("CREATE TABLE ads (account VARCHAR(10), d DATE)"))
        conn.execute(text("INSERT INTO ads VALUES ('a1', '2026-02-15')"))
    query = 'SELECT account AS "账户ID", \'p1\' AS "计划" FROM ads WHERE d = :day'
    store.add(bridge, ad_spec(source={"kind": "sql", "query": query}))
    plain = parse(ad_spec(source={"kind": "sql", "query": query, "url": url})).model_dump_json()
    with bridge.engine.begin() as conn:  # the column as the previous release wrote it
        conn.execute(update(Pipeline).where(Pipeline.name == "ad-spend").values(spec=plain))
    assert store.get(bridge.engine, "ad-spend", box=bridge.secret_box).spec.source.url == url
    assert PASSWORD not in store.get(bridge.engine, "ad-spend").spec.source.url  # shown masked
    table = FakeTable()
    assert run(bridge, runs.create(bridge.engine, "ad-spend", [DAY], "manual"), table).state == "succeeded"
    assert [r["账户ID"] for r in table.rows()] == ["a1"]


@pytest.mark.parametrize(("url", "query", "named"), [
    (None, 'SELECT account AS "账户ID" FROM no_such_table WHERE d = :day', "no_such_table"),
    (None, 'SELECT no_such_column AS "账户ID" FROM pipelines WHERE created_at > :day', "no_such_column"),
    (None, 'SELECT name AS "账户ID" FROM pipelines WHERE WHERE created_at > :day', "syntax error"),
    (None, 'SELECT name AS "账户ID" FROM pipelines WHERE name = :other AND created_at > :day', "'other'"),
    (f"postgresql+nosuchdriver://u:{PASSWORD}@127.0.0.1:1/x", 'SELECT 1 AS "账户ID" WHERE :day IS NULL',
     "Can't load plugin"),
    (None, 'WITH d AS (SELECT CAST(:day AS DATE) AS day) DELETE FROM pipelines WHERE updated_at < '
           '(SELECT day FROM d) RETURNING name AS "账户ID"', "read-only"),  # refused by the database
])
def test_an_sql_query_that_cannot_run_as_defined_fails_the_run_at_once(bridge, url, query, named):
    source = {"kind": "sql", "query": query, **({"url": url} if url else {})}
    store.add(bridge, ad_spec(source=source))
    run_id = runs.create(bridge.engine, "ad-spend", [DAY], "schedule")
    outcome = run(bridge, run_id, FakeTable())
    status = runs.status(bridge.engine, run_id)
    assert (outcome.state, status.state, status.attempts) == ("failed", "failed", 1), outcome.text
    assert status.error.startswith("pipeline ad-spend: its SQL") and named in status.error
    assert "\n" not in status.error and PASSWORD not in status.error
    later = bridge.queues[QueueName.PIPELINES].scheduled_job_registry.get_job_ids()
    assert f"pipeline-run-{run_id}-later" not in later  # not retried


def test_an_sql_database_that_cannot_be_reached_is_retried(bridge):
    from sqlalchemy.exc import OperationalError

    source = {"kind": "sql", "query": 'SELECT 1 AS "账户ID" WHERE :day IS NULL',
              "url": f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/x"}  # nothing listens on port 1
    store.add(bridge, ad_spec(source=source))
    spec = parse(ad_spec(source=source))
    ctx = FetchContext("ad-spend", DAY, None, None)  # type: ignore[arg-type]
    with pytest.raises(OperationalError) as raised:
        sources.fetch(bridge, spec, ctx)
    assert not isinstance(raised.value, sources.SourceError)
    run_id = runs.create(bridge.engine, "ad-spend", [DAY], "schedule")
    outcome = run(bridge, run_id, FakeTable())
    status = runs.status(bridge.engine, run_id)
    assert (outcome.state, status.state, status.attempts) == ("queued", "queued", 1)
    assert "OperationalError" in status.error and PASSWORD not in status.error


def test_the_overview_shows_each_pipelines_last_run_however_many_runs_came_since(bridge):
    from bot.overview import _pipelines

    engine = bridge.engine
    two_accounts = {"kind": "python", "callable": "tests.pipeline_helpers:two_accounts"}
    store.add(bridge, ad_spec(name="quiet", source=two_accounts))
    store.add(bridge, ad_spec(name="busy"))
    quiet = runs.create(engine, "quiet", [DAY], "manual")
    assert run(bridge, quiet, FakeTable()).state == "succeeded"
    for _ in range(60):
        busy = runs.create(engine, "busy", [DAY], "schedule")
        runs.succeed(engine, busy, {"created": 0}, {"ok": True})
        store.mark_run(engine, "busy", busy, "succeeded")
    active = runs.create(engine, "busy", [date(2026, 2, 16)], "manual")  # queued: the newest of busy
    shown = {p["name"]: p for p in _pipelines(engine)}
    assert (shown["quiet"]["run"], shown["quiet"]["state"]) == (quiet, "succeeded")
    assert (shown["quiet"]["days"], shown["quiet"]["written"], shown["quiet"]["result"]) == (
        "2026-02-15", "+2 ~0 -0", True)
    assert (shown["busy"]["run"], shown["busy"]["state"], shown["busy"]["days"]) == (
        active, "queued", "2026-02-16")


def test_a_source_that_returns_no_rows_is_refused_clearly():
    with pytest.raises(sources.SourceError, match="returned a dict"):
        sources.as_result({"账户ID": "a1"}, "pipelines.x:f")
    with pytest.raises(sources.SourceError, match="row 2 is a tuple"):
        sources.as_result([{"a": 1}, ("a", 1)], "pipelines.x:f")
    result = sources.as_result(FetchResult([{"a": 1}], ["g1", 2], {3: ValueError("x")}), "f")  # type: ignore[dict-item]
    assert result.expected_groups == ["g1", "2"] and result.failed_groups == {"3": "x"}
    assert sources.as_result(iter([{"a": 1}]), "f").rows == [{"a": 1}]


def test_due_pipelines_and_the_cron_tick(bridge):
    engine = bridge.engine
    store.add(bridge, ad_spec())
    store.add(bridge, ad_spec(name="manual-only", schedule=None))
    store.add(bridge, ad_spec(name="off"))
    store.set_enabled(engine, "off", False)
    created = datetime(2026, 2, 14, 20, 0, tzinfo=SH)
    with engine.begin() as conn:
        conn.execute(update(Pipeline).values(created_at=created))
    assert schedule.due_pipelines(bridge, at("2026-02-15 06:59")) == []
    now = at("2026-02-15 07:00:30")
    [due] = schedule.due_pipelines(bridge, now)
    assert (due.name, due.slot) == ("ad-spend", at("2026-02-15 07:00"))
    assert (due.first, due.last) == (date(2026, 2, 14), date(2026, 2, 14))
    ticked = runs.start_due(bridge, now)
    [run_id] = ticked["started"]
    assert ticked["resumed"] == []
    assert runs.status(engine, run_id).triggered_by == "schedule"
    assert bridge.queues[QueueName.PIPELINES].fetch_job(f"pipeline-run-{run_id}") is not None
    assert schedule.due_pipelines(bridge, now + timedelta(minutes=1)) == []  # that slot is taken
    # the next morning the first run is still active: the pipeline waits a tick rather than stacking
    assert runs.start_due(bridge, at("2026-02-16 07:00:30"))["started"] == []
    # the run succeeded up to the 14th; the cron was then down until the 18th: the missed days follow
    with engine.begin() as conn:
        conn.execute(update(PipelineRun).values(state="succeeded"))
    store.mark_run(engine, "ad-spend", run_id, "succeeded", covered=date(2026, 2, 14))
    [due] = schedule.due_pipelines(bridge, at("2026-02-18 09:00"))
    assert (due.first, due.last, due.slot) == (date(2026, 2, 15), date(2026, 2, 17), at("2026-02-18 07:00"))
    # a stalled run is re-offered
    with engine.begin() as conn:
        conn.execute(update(PipelineRun).values(state="running",
                                                heartbeat_at=datetime(2026, 2, 1, tzinfo=UTC)))
    assert runs.start_due(bridge, at("2026-02-18 09:00"))["resumed"] == [run_id]


# -- the table's reads, against the sandbox ----------------------------------------------------------


def test_bitable_reads_through_the_gateway(services, sandbox):
    """Fields, and every record with only the fields asked for, from the sandbox's seeded table;
    one call per page, counted."""
    from bot.pipelines.target import BitableTable
    from sandbox.seed import PEOPLE_COUNT, PEOPLE_TABLE, QUALITY_APP

    table = BitableTable(services.feishu, QUALITY_APP, PEOPLE_TABLE)
    fields = table.fields()
    assert fields["入职日期"] == FieldInfo("入职日期", DATE, fields["入职日期"].ui_type)
    assert fields["在职"].type == CHECKBOX and table.calls == 1
    records = table.read(["姓名", "入职日期"])
    assert len(records) == PEOPLE_COUNT and table.calls == 2  # 120 records: one page of 500
    assert all(set(r["fields"]) <= {"姓名", "入职日期"} and r["record_id"] for r in records)
    _, state = sandbox
    bitable = [c["path"].rsplit("/", 1)[-1] for c in state.api_calls if "/bitable/" in c["path"]]
    assert bitable == ["fields", "records"]


def test_a_run_with_nothing_to_write_reads_the_sandbox_table_and_succeeds(services, sandbox):
    from sandbox.seed import PEOPLE_TABLE, QUALITY_APP

    services.settings.pipeline_modules = "tests.pipeline_helpers"
    services.settings.pipeline_reread_delay_seconds = 0.0
    source = {"kind": "python", "callable": "tests.pipeline_helpers:no_rows"}
    store.add(services, {"name": "people", "source": source,
                         "target": {"app_token": QUALITY_APP, "table_id": PEOPLE_TABLE},
                         "key": ["姓名", "入职日期"],
                         "partition": "入职日期", "group_by": "部门", "sum_fields": ["职级"]})
    run_id = runs.create(services.engine, "people", [date(2030, 1, 1)], "manual")
    outcome = runner.run_pipeline(services, run_id)
    assert outcome.state == "succeeded", outcome.text
    status = runs.status(services.engine, run_id)
    assert (status.calls, status.created, status.deleted) == (2, 0, 0)  # fields, one read; no writes
    assert status.summary["records"] == 0 and status.summary["ok"]
    # the same day with rows whose key field the table lacks: refused before anything is written
    store.add(services, {"name": "people", "source": {"kind": "python",
                                                      "callable": "tests.pipeline_helpers:unknown_column"},
                         "target": {"app_token": QUALITY_APP, "table_id": PEOPLE_TABLE},
                         "key": ["姓名", "入职日期"],
                         "partition": "入职日期"}, replace=True)
    again = runs.create(services.engine, "people", [date(2030, 1, 1)], "manual")
    failed = runner.run_pipeline(services, again)
    assert failed.state == "failed" and "'账户ID' is not a field of the target table" in failed.text


def test_spec_requires_the_partition_in_the_key():
    from bot.pipelines.spec import parse

    doc = {"name": "p", "source": {"kind": "python", "callable": "x.y:z"},
           "target": {"app_token": APP, "table_id": TABLE}, "key": ["订单"], "partition": "日期"}
    with pytest.raises(Exception, match="partition field 日期 must be one of the key fields"):
        parse(doc)
