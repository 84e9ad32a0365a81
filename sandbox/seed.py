"""Deterministic seed data for the sandbox's wiki, bitables, spreadsheets and docs.

A wiki-hosted bitable app "质量问题跟踪" with three tables — 缺陷问题闭环表 (exactly 253
records, the count the user's scripts check), 人力盘点 (120) and 大表 (50,000, built on first
use) — with every common field type, valued as Feishu's records API returns them; a
spreadsheet "人力盘点表" (a 3,001-row sheet and a small one); and the wiki node 故障定位指引
with five guide documents under it. And the demo pipeline's target, bitable app "管道演示"
(PIPELINE_APP_TOKEN) with the empty table 广告日报 (ADS_DAILY_TABLE_ID).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

# Field type codes (Feishu bitable): text 1, number 2, single select 3, multi select 4,
# date 5, checkbox 7, person 11, phone 13, url 15, attachment 17, link 18, formula 20,
# created time 1001, auto number 1005.
TEXT, NUMBER, SELECT, MULTI, DATE, CHECKBOX, PERSON, PHONE, URL, ATTACHMENT, LINK, FORMULA = (
    1, 2, 3, 4, 5, 7, 11, 13, 15, 17, 18, 20)
LOOKUP = 19
CREATED_TIME, AUTO_NUMBER = 1001, 1005
UI_TYPES = {TEXT: "Text", NUMBER: "Number", SELECT: "SingleSelect", MULTI: "MultiSelect", DATE: "DateTime",
            CHECKBOX: "Checkbox", PERSON: "User", PHONE: "Phone", URL: "Url", ATTACHMENT: "Attachment",
            LINK: "SingleLink", LOOKUP: "Lookup", FORMULA: "Formula", CREATED_TIME: "CreatedTime",
            AUTO_NUMBER: "AutoNumber"}

WIKI_SPACE_ID = "7300000000000000001"
QUALITY_NODE = "wikcnSandboxQualityNode01"
QUALITY_APP = "bascnSandboxQualityApp001"
DEFECTS_TABLE = "tblDefects0000001"
PEOPLE_TABLE = "tblPeople00000001"
BIG_TABLE = "tblBigTable000001"
DEFECT_COUNT, PEOPLE_COUNT, BIG_COUNT = 253, 120, 50_000
BASE_MS = 1_672_531_200_000  # 2023-01-01 UTC, in milliseconds

USERS = [(f"ou_sandbox_user_{i:04d}", name) for i, name in enumerate(
    ["沙箱用户", "张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏"], start=1)]


@dataclass
class Field:
    field_id: str
    field_name: str
    type: int
    property: dict[str, Any] | None = None
    is_primary: bool = False

    def to_api(self) -> dict[str, Any]:
        return {"field_id": self.field_id, "field_name": self.field_name, "type": self.type,
                "property": self.property, "is_primary": self.is_primary, "ui_type": UI_TYPES[self.type],
                "is_hidden": False}


@dataclass
class Table:
    table_id: str
    name: str
    fields: list[Field]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # record_id → record
    revision: int = 1
    build: Any = None  # deferred builder for big tables
    # Computes formula and lookup values from the other cells (after every edit), returns the
    # ids of records whose computed values changed: Feishu sends no event for those.
    derive: Any = None

    def ensure_built(self) -> None:
        if self.build is not None:
            builder, self.build = self.build, None
            builder(self)

    def recompute(self) -> set[str]:
        return self.derive(self) if self.derive is not None else set()


@dataclass
class App:
    app_token: str
    name: str
    tables: dict[str, Table]


@dataclass
class WikiNode:
    node_token: str
    obj_token: str
    obj_type: str
    title: str
    space_id: str = WIKI_SPACE_ID
    parent_node_token: str = ""
    has_child: bool = False

    def to_api(self) -> dict[str, Any]:
        return {"space_id": self.space_id, "node_token": self.node_token, "obj_token": self.obj_token,
                "obj_type": self.obj_type, "parent_node_token": self.parent_node_token, "node_type": "origin",
                "title": self.title, "has_child": self.has_child, "obj_create_time": str(BASE_MS // 1000),
                "obj_edit_time": str(BASE_MS // 1000)}


def _options(names: list[str]) -> dict[str, Any]:
    return {"options": [{"name": n, "id": f"opt{i:04d}", "color": i} for i, n in enumerate(names)]}


SEVERITY = ["致命", "严重", "一般", "提示"]
TAGS = ["前端", "后端", "数据", "安全", "性能", "体验"]
PROBLEMS = ["登录失败", "数据不一致", "页面卡顿", "权限错误", "导出异常"]
DEPARTMENTS = ["功能安全部", "研发一部", "研发二部", "测试部", "产品部"]


def _person(rng: random.Random) -> list[dict[str, str]]:
    open_id, name = rng.choice(USERS)
    return [{"id": open_id, "name": name, "en_name": "", "email": f"{open_id}@sandbox.example"}]


def _defects(table: Table) -> None:
    rng = random.Random(253)
    for n in range(1, DEFECT_COUNT + 1):
        rid = f"recDefect{n:08d}"
        created = BASE_MS + n * 3_600_000
        fields: dict[str, Any] = {
            "问题编号": f"BUG-{n:04d}",
            "问题描述": f"第{n}号问题：{rng.choice(PROBLEMS)}",
            "严重程度": rng.choice(SEVERITY),
            "标签": rng.sample(TAGS, rng.randint(0, 3)),
            "发现日期": created - created % 86_400_000,
            "是否闭环": rng.random() < 0.7,
            "负责人": _person(rng),
            "工时": round(rng.uniform(0.5, 40), 1),
            "参考链接": {"link": f"https://sandbox.example/bugs/{n}", "text": f"BUG-{n:04d}"},
            "联系电话": f"138{n:08d}",
            "创建时间": created,
            "自动编号": str(n),
        }
        if n % 7 == 0:
            fields["附件"] = [{"file_token": f"boxcnSandboxFile{n:06d}", "name": f"截图{n}.png",
                              "size": 1000 + n, "type": "image/png", "url": f"https://sandbox.example/f/{n}",
                              "tmp_url": f"https://sandbox.example/tmp/{n}"}]
        if n > 1 and n % 5 == 0:
            fields["关联问题"] = {"link_record_ids": [f"recDefect{n - 1:08d}"]}
        for key in [k for k, v in fields.items() if v in ([], None)]:
            del fields[key]  # Feishu omits empty cells
        table.records[rid] = {"record_id": rid, "fields": fields, "created_time": created,
                              "last_modified_time": created}
    _derive_defects(table)


def _derive_defects(table: Table) -> set[str]:
    """评分 = CONCATENATE(严重程度, "-", 工时) of the record itself; 关联问题描述 looks up the
    linked record's 问题描述 — so editing one record changes another's value, with no event."""
    changed = set()
    for rid, record in table.records.items():
        fields = record["fields"]
        derived: dict[str, Any] = {
            "评分": [{"type": "text", "text": f"{fields.get('严重程度', '')}-{fields.get('工时', '')}"}]}
        linked = [table.records.get(i) for i in (fields.get("关联问题") or {}).get("link_record_ids", [])]
        texts = [r["fields"]["问题描述"] for r in linked if r and r["fields"].get("问题描述")]
        if texts:
            derived["关联问题描述"] = [{"type": "text", "text": t} for t in texts]
        for name in ("评分", "关联问题描述"):
            if fields.get(name) != derived.get(name):
                changed.add(rid)
                if name in derived:
                    fields[name] = derived[name]
                else:
                    fields.pop(name, None)
    return changed


def _people(table: Table) -> None:
    rng = random.Random(120)
    for n in range(1, PEOPLE_COUNT + 1):
        rid = f"recPeople{n:08d}"
        table.records[rid] = {"record_id": rid, "fields": {
            "姓名": f"员工{n:03d}", "部门": rng.choice(DEPARTMENTS), "职级": rng.randint(1, 10),
            "在职": rng.random() < 0.9, "入职日期": BASE_MS - rng.randint(0, 3000) * 86_400_000,
        }, "created_time": BASE_MS, "last_modified_time": BASE_MS}


def _big(table: Table) -> None:
    for n in range(1, BIG_COUNT + 1):
        rid = f"recBig{n:011d}"
        table.records[rid] = {"record_id": rid, "fields": {
            "序号": f"R{n:06d}", "数值": n * 3 % 1000, "分组": TAGS[n % len(TAGS)], "完成": n % 2 == 0,
        }, "created_time": BASE_MS + n, "last_modified_time": BASE_MS + n}


def seed() -> tuple[dict[str, App], dict[str, WikiNode]]:
    defects = Table(DEFECTS_TABLE, "缺陷问题闭环表", [
        Field("fldBugNo0001", "问题编号", TEXT, is_primary=True),
        Field("fldBugDesc001", "问题描述", TEXT),
        Field("fldSeverity01", "严重程度", SELECT, _options(SEVERITY)),
        Field("fldTags000001", "标签", MULTI, _options(TAGS)),
        Field("fldFoundOn001", "发现日期", DATE, {"date_formatter": "yyyy/MM/dd", "auto_fill": False}),
        Field("fldClosed0001", "是否闭环", CHECKBOX),
        Field("fldOwner00001", "负责人", PERSON, {"multiple": False}),
        Field("fldHours00001", "工时", NUMBER, {"formatter": "0.0"}),
        Field("fldLink000001", "参考链接", URL),
        Field("fldPhone00001", "联系电话", PHONE),
        Field("fldFiles00001", "附件", ATTACHMENT),
        Field("fldRelated001", "关联问题", LINK, {"table_id": DEFECTS_TABLE, "multiple": False}),
        Field("fldScore00001", "评分", FORMULA, {"formula_expression": "CONCATENATE(严重程度, \"-\", 工时)"}),
        Field("fldRelDesc001", "关联问题描述", LOOKUP, {"link_field_id": "fldRelated001",
                                                         "target_field_id": "fldBugDesc001"}),
        Field("fldCreated001", "创建时间", CREATED_TIME, {"date_formatter": "yyyy/MM/dd HH:mm"}),
        Field("fldAutoNo0001", "自动编号", AUTO_NUMBER),
    ])
    _defects(defects)
    defects.derive = _derive_defects
    people = Table(PEOPLE_TABLE, "人力盘点", [
        Field("fldName000001", "姓名", TEXT, is_primary=True),
        Field("fldDept000001", "部门", SELECT, _options(DEPARTMENTS)),
        Field("fldLevel00001", "职级", NUMBER, {"formatter": "0"}),
        Field("fldActive0001", "在职", CHECKBOX),
        Field("fldJoined0001", "入职日期", DATE, {"date_formatter": "yyyy/MM/dd", "auto_fill": False}),
    ])
    _people(people)
    big = Table(BIG_TABLE, "大表", [
        Field("fldSeq0000001", "序号", TEXT, is_primary=True),
        Field("fldValue00001", "数值", NUMBER, {"formatter": "0"}),
        Field("fldGroup00001", "分组", SELECT, _options(TAGS)),
        Field("fldDone000001", "完成", CHECKBOX),
    ], build=_big)
    app = App(QUALITY_APP, "质量问题跟踪", {t.table_id: t for t in (defects, people, big)})
    node = WikiNode(QUALITY_NODE, QUALITY_APP, "bitable", "质量问题跟踪")
    pipeline = pipeline_app()
    return {app.app_token: app, pipeline.app_token: pipeline}, {node.node_token: node}


# -- the demo pipeline's target (issue 17) ----------------------------------------------------

PIPELINE_APP_TOKEN = "bascnSandboxPipelineApp01"
ADS_DAILY_TABLE_ID = "tblAdsDaily000001"
ADS_DAILY_FIELDS = (
    ("日期", DATE), ("账户ID", TEXT), ("账户名称", TEXT), ("计划ID", TEXT), ("计划名称", TEXT),
    ("消耗", NUMBER), ("展示", NUMBER), ("点击", NUMBER), ("转化", NUMBER),
)


def pipeline_app() -> App:
    """Bitable "管道演示" with the empty table 广告日报: where the demo pipeline writes other
    systems' data (its fields as ADS_DAILY_FIELDS, 日期 the primary field)."""
    props = {DATE: {"date_formatter": "yyyy/MM/dd", "auto_fill": False}, NUMBER: {"formatter": "0"}}
    fields = [Field(f"fldAds{n:08d}", name, kind, dict(props[kind]) if kind in props else None,
                    is_primary=n == 1) for n, (name, kind) in enumerate(ADS_DAILY_FIELDS, start=1)]
    fields[5].property = {"formatter": "0.00"}  # 消耗: money
    ads = Table(ADS_DAILY_TABLE_ID, "广告日报", fields)
    return App(PIPELINE_APP_TOKEN, "管道演示", {ads.table_id: ads})


# -- spreadsheets and docs ------------------------------------------------------------------

SHEET_TOKEN = "shtcnSandboxSheet00001"
GUIDE_NODE = "wikcnSandboxGuideNode01"
GUIDE_DOC = "doxcnSandboxGuideRoot001"
GUIDE_COUNT = 5


@dataclass
class Sheet:
    sheet_id: str
    title: str
    values: list[list[Any]]  # rows of cells; None = empty

    @property
    def column_count(self) -> int:
        return max((len(r) for r in self.values), default=0)


@dataclass
class Spreadsheet:
    token: str
    title: str
    sheets: list[Sheet]


@dataclass
class Document:
    document_id: str
    title: str
    paragraphs: list[tuple[str, str]]  # (block kind: heading1 | text, content)
    revision_id: int = 1

    def blocks(self) -> list[dict[str, Any]]:
        """docx/v1 blocks: the page block (block_type 1) whose children are the paragraphs."""
        kinds = {"heading1": 3, "text": 2}
        children = []
        out: list[dict[str, Any]] = []
        for i, (kind, content) in enumerate(self.paragraphs, start=1):
            block_id = f"{self.document_id}_b{i:03d}"
            children.append(block_id)
            out.append({"block_id": block_id, "block_type": kinds[kind], "parent_id": self.document_id,
                        kind: {"elements": [{"text_run": {"content": content, "text_element_style": {}}}],
                               "style": {}}})
        page = {"block_id": self.document_id, "block_type": 1, "parent_id": "", "children": children,
                "page": {"elements": [{"text_run": {"content": self.title, "text_element_style": {}}}],
                         "style": {}}}
        return [page, *out]

    def raw_content(self) -> str:
        return "\n".join([self.title, *(content for _, content in self.paragraphs)]) + "\n"


def seed_documents() -> tuple[dict[str, Spreadsheet], dict[str, Document], list[WikiNode]]:
    rng = random.Random(5)
    inventory = [["工号", "姓名", "部门", "职级", "入职日期", "在岗"]] + [
        [f"E{n:05d}", f"员工{n}", rng.choice(DEPARTMENTS), rng.randint(1, 10),
         f"2023-{rng.randint(1, 12):02d}-01", rng.random() < 0.9] for n in range(1, 3001)
    ]
    summary = [["部门", "人数", "备注"]] + [[d, rng.randint(5, 50), None if i % 2 else "重点"]
                                           for i, d in enumerate(DEPARTMENTS)]
    sheet = Spreadsheet(SHEET_TOKEN, "人力盘点表", [Sheet("shtInv001", "明细", inventory),
                                                     Sheet("shtSum001", "汇总", summary)])
    root = Document(GUIDE_DOC, "故障定位指引", [("text", "本目录汇总常见故障的定位方法。")])
    docs = {root.document_id: root}
    nodes = [WikiNode(GUIDE_NODE, GUIDE_DOC, "docx", root.title, has_child=True)]
    topics = ["登录失败", "数据同步延迟", "导出超时", "权限异常", "消息未送达"]
    for n, topic in enumerate(topics[:GUIDE_COUNT], start=1):
        doc = Document(f"doxcnSandboxGuide{n:07d}", f"故障定位指引{n}：{topic}", [
            ("heading1", "现象"), ("text", f"{topic}时用户看到的报错与表现。"),
            ("heading1", "排查步骤"), ("text", f"1. 查看日志中与{topic}相关的错误码。2. 核对配置。"),
            ("heading1", "解决办法"), ("text", "按排查结论修复后复测，并在缺陷问题闭环表中登记。"),
        ])
        docs[doc.document_id] = doc
        nodes.append(WikiNode(f"wikcnSandboxGuide{n:06d}", doc.document_id, "docx", doc.title,
                              parent_node_token=GUIDE_NODE))
    return {sheet.token: sheet}, docs, nodes
