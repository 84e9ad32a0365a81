"""Upgrades keep data: the migrations reach exactly schema.sql, adopt a database made before
they existed without losing a row, are idempotent, step back and forth, and keep the Coze
capture triggers (and child rows) through SQLite's table-copying batch mode — on SQLite and
PostgreSQL."""

from __future__ import annotations

import re
import textwrap
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData, func, insert, inspect, select, text, update

from bot import migrate
from bot.db import init_schema, make_engine, run_schema_sections
from bot.migrations import ALL_REVISIONS, HEAD
from bot.models import Base, CozeOutbox
from bot.services import build_services, install
from sandbox.demo_tables import CUSTOMERS, create_demo_tables
from tests.coze_helpers import customer_spec

BASELINE_SQL = Path(migrate.MIGRATIONS_DIR, "versions", "0001_baseline.sql")
# tables later revisions create (a baseline database has none of them to fill)
ADDED_AFTER_BASELINE = {"pipelines", "pipeline_runs", "pipeline_run_days"}  # 0006


@pytest.fixture
def second_url(database_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Another empty database of the same kind."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'other.db'}"
    return request.getfixturevalue("postgres").create_database()


def _engine(url: str):
    return make_engine(url)


# -- what "the same schema" means ---------------------------------------------------------


def _norm(sql: object) -> str:
    return re.sub(r"\s+", " ", str(sql)).strip().lower().replace('"', "")


def snapshot(engine: Engine) -> dict:
    """Everything a schema promises, reflected: tables, columns (type, nullability, default),
    keys, indexes (incl. partial ones), checks; PostgreSQL's functions and sequences."""
    inspector = inspect(engine)
    tables = {}
    for name in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        tables[name] = {
            "columns": [(c["name"], _norm(c["type"].compile(dialect=engine.dialect)), c["nullable"],
                         _norm(c["default"]) if c["default"] is not None else None)
                        for c in inspector.get_columns(name)],
            "pk": inspector.get_pk_constraint(name)["constrained_columns"],
            "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]),
                           (f.get("options") or {}).get("ondelete"))
                          for f in inspector.get_foreign_keys(name)),
            "uniques": sorted((u["name"], tuple(u["column_names"]))
                              for u in inspector.get_unique_constraints(name)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]),
                               _norm(i.get("dialect_options", {}).get(f"{engine.dialect.name}_where", "")))
                              for i in inspector.get_indexes(name)),
            "checks": sorted(_norm(c["sqltext"]) for c in inspector.get_check_constraints(name)),
        }
    extras: dict = {}
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            extras["functions"] = sorted(conn.execute(text(
                "SELECT proname, md5(prosrc) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public'")).all())
            extras["sequences"] = sorted(conn.execute(text(
                "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = 'public'"
            )).scalars())
        else:
            extras["triggers"] = sorted(conn.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
    return {"tables": tables, **extras}


def test_revision_list_matches_the_scripts():
    assert [revision for revision, _ in migrate.history()] == list(ALL_REVISIONS)
    assert ALL_REVISIONS[-1] == HEAD


def test_upgrade_from_empty_equals_schema_sql(database_url, second_url):
    migrated, scripted = _engine(database_url), _engine(second_url)
    try:
        assert migrate.status(migrated).state == "empty"
        moved = migrate.upgrade(migrated)
        assert (moved.before, moved.after) == (None, HEAD)
        init_schema(scripted)
        assert migrate.status(scripted).state == "current"
        got, want = snapshot(migrated), snapshot(scripted)
        assert set(got["tables"]) == set(Base.metadata.tables)
        assert got == want
    finally:
        migrated.dispose()
        scripted.dispose()


# -- a database made by today's main, populated, then upgraded -----------------------------

NOW = datetime(2026, 11, 30, 8, 0, 0)


def _rows_for_every_table(template_id: int) -> dict[str, list[dict]]:
    """One plausible row for each table the product paths below do not fill."""
    return {
        "event_receipts": [{"event_id": "ev-1", "event_type": "im.message.receive_v1", "payload": "{}",
                            "status": "done", "job_id": "job-1"}],
        "alerts": [{"key": "token:ou_1", "kind": "token", "message": "登录即将过期"}],
        "cache_sources": [{"id": 1, "name": "orders", "kind": "bitable", "token": "bascn1", "status": "ok"}],
        "cache_tables": [{"source_id": 1, "table_id": "tbl1", "name": "订单", "record_count": 2}],
        "cache_fields": [{"source_id": 1, "table_id": "tbl1", "field_id": "fld1", "name": "名称",
                          "type": 1, "position": 0}],
        "cache_records": [{"source_id": 1, "table_id": "tbl1", "record_id": f"rec{i}",
                           "fields": f'{{"名称": "订单{i}"}}', "synced_at": NOW} for i in range(2)],
        "cache_sheets": [{"source_id": 1, "sheet_id": "sh1", "title": "表1", "position": 0, "row_count": 1,
                          "column_count": 1, "cell_values": "[[1]]", "synced_at": NOW}],
        "cache_documents": [{"source_id": 1, "document_id": "doc1", "title": "说明", "raw_content": "正文",
                             "blocks": "[]", "synced_at": NOW}],
        "cache_pending": [{"source_id": 1, "table_id": "tbl1", "record_id": "rec1", "queued_at": NOW}],
        "export_auth": [{"sealed": "gAAAA-sealed", "fingerprint": "abcd1234", "updated_at": NOW}],
        "export_runs": [{"id": 1, "range_start": datetime(2022, 1, 1), "range_end": datetime(2022, 3, 1),
                         "options": "{}", "cursor_at": datetime(2022, 2, 1), "calls": 3}],
        "export_windows": [{"run_id": 1, "start_at": datetime(2022, 1, 1), "end_at": datetime(2022, 1, 15),
                            "state": "verified", "rows": 812},
                           {"run_id": 1, "start_at": datetime(2022, 1, 15), "end_at": datetime(2022, 2, 1),
                            "state": "awaiting_file", "rows": None}],
        "export_files": [{"message_id": "om_1", "chat_id": "oc_1", "file_key": "fk", "file_name": "a.xlsx",
                          "message_at": NOW, "seen_via": "event", "sha256": "ab" * 32, "state": "matched"}],
        "contract_cooperation_records": [{"record_id": "r1", "created_at": NOW, "data": "{}",
                                          "updated_at": NOW}],
        "coze_deliveries": [{"template_uuid": "u", "workflow_id": "w", "op": "insert", "row_key": "1",
                             "attempt": 1, "ok": True, "created_at": NOW}],
        "coze_manual_syncs": [{"template_id": template_id, "batch_size": 10}],
        "chat_commands": [{"message_id": "om_2", "chat_id": "oc_1", "open_id": "ou_1", "text": "/ping",
                           "command": "ping", "outcome": "ok", "created_at": NOW}],
        "chat_cards": [{"message_id": "om_3", "chat_id": "oc_1", "kind": "export", "ref_id": 1,
                        "updated_at": NOW}],
    }


def _customer(i: int, phone: str = "13800138000") -> dict:
    return {"id": i, "uuid": f"00000000-0000-0000-0000-{i:012d}", "customer_name": f"客户{i}",
            "customer_code": f"C{i:03d}", "phone": phone, "email": f"c{i}@example.com", "address": "上海",
            "balance": Decimal("12.50"), "is_active": True, "updated_at": datetime(2024, 1, 15, 10)}


def _columns(engine: Engine) -> dict[str, list[str]]:
    metadata = MetaData()
    metadata.reflect(engine)
    return {name: [c.name for c in table.columns] for name, table in metadata.tables.items()
            if name != "alembic_version"}


def _dump(engine: Engine, columns: dict[str, list[str]] | None = None) -> dict[str, list[tuple]]:
    """Every row of every table, as reprs; only `columns` (the columns a database had before an
    upgrade added some) when given."""
    metadata = MetaData()
    metadata.reflect(engine)
    columns = columns or _columns(engine)
    with engine.connect() as conn:
        return {name: sorted(tuple(map(repr, row)) for row in conn.execute(
                    select(*(metadata.tables[name].c[c] for c in names))))
                for name, names in columns.items()}


def _todays_main_database(settings):
    """What `feishu-bridge db init` on main (before migrations) produced: the baseline script run
    on its own, no version table; then every table filled through the product's own paths where
    it has one (a sealed user token, a Coze template with its installed triggers)."""
    services = build_services(settings)
    install(services)
    with services.engine.begin() as connection:
        run_schema_sections(connection, BASELINE_SQL.read_text(encoding="utf-8"))
    create_demo_tables(services.engine)
    return services


def test_database_from_todays_main_keeps_every_row(settings, redis_conn, sandbox, tmp_path):
    from bot.coze import templates
    from bot.coze.triggers import replace_triggers

    services = _todays_main_database(settings)
    try:
        engine = services.engine
        assert migrate.status(engine).state == "unversioned"
        # a sealed user token, as main's token manager stored it (today's writes a column main lacks)
        expires = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=2)
        box = services.secret_box
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO oauth_tokens (subject, display_name, access_token, refresh_token, expires_at, "
                "refresh_expires_at, scopes, status, generation, created_at, updated_at) VALUES (:s, :n, :a, "
                ":r, :e, :re, 'offline_access', 'active', 1, :now, :now)"),
                {"s": "ou_migrated", "n": "迁移用户", "a": box.seal("u-access-survives-upgrade"),
                 "r": box.seal("r-refresh-1"), "e": expires, "re": expires + timedelta(days=30), "now": NOW})
            conn.execute(text("INSERT INTO token_refreshes (subject, at, cause, outcome) "
                              "VALUES ('ou_migrated', :now, 'login', 'authorized')"), {"now": NOW})
        template = templates.create(services, customer_spec(sandbox[0]))
        with engine.begin() as conn:  # main's capture triggers: from before 0004, no old_row_key
            replace_triggers(conn, template.id, "customers", templates.plan_for(template), with_old_key=False)
        with engine.begin() as conn:
            conn.execute(insert(CUSTOMERS), [_customer(1), _customer(2)])
            conn.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == 2).values(phone="13900000000"))
            for table, rows in _rows_for_every_table(template.id).items():
                for row in rows:
                    conn.execute(insert(Base.metadata.tables[table]), row)
        before, baseline_columns = _dump(engine), _columns(engine)
        empty = [name for name in set(Base.metadata.tables) - ADDED_AFTER_BASELINE if not before[name]]
        assert not empty, f"tables left empty: {empty}"
        assert len(before["coze_outbox"]) == 3  # two inserts and an update, captured by the triggers

        moved = migrate.upgrade(engine, backup_dir=tmp_path / "backups")
        assert (moved.before, moved.after) == (None, HEAD)
        assert migrate.status(engine).state == "current"
        if engine.dialect.name == "sqlite":
            assert moved.backup is not None and moved.backup.is_file()
        assert _dump(engine, baseline_columns) == before  # every row of every table, value for value
        # The token still decrypts (no refresh: the stored access token is returned as is).
        assert services.user_tokens.get_valid_user_token("ou_migrated") == "u-access-survives-upgrade"
        # The capture triggers still fire.
        with engine.begin() as conn:
            conn.execute(insert(CUSTOMERS), [_customer(3)])
            conn.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == 1).values(phone="13700000000"))
        with services.sessions() as session:
            ops = session.execute(select(CozeOutbox.op, CozeOutbox.row_key).order_by(CozeOutbox.id)).all()
        assert [tuple(o) for o in ops[-2:]] == [("insert", "3"), ("update", "1")]
        assert len(ops) == 5
        # …re-installed by 0004: a key change is filed under both keys
        with engine.begin() as conn:
            conn.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == 3).values(id=33))
        with services.sessions() as session:
            last = session.execute(select(CozeOutbox.row_key, CozeOutbox.old_row_key)
                                   .order_by(CozeOutbox.id.desc()).limit(1)).one()
        assert tuple(last) == ("33", "3")

        again = migrate.upgrade(engine, backup_dir=tmp_path / "backups")  # idempotent
        assert not again.changed and again.backup is None
    finally:
        services.close()


def test_upgrade_twice_changes_nothing_and_one_step_round_trips(database_url):
    engine = _engine(database_url)
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(insert(Base.metadata.tables["export_files"]), [
                {"message_id": f"om_{i}", "chat_id": "oc", "file_key": "k", "file_name": "f.xlsx",
                 "message_at": NOW, "seen_via": "poll", "sha256": f"{i:064d}"} for i in range(3)])
        schema, rows = snapshot(engine), _dump(engine)
        assert not migrate.upgrade(engine).changed
        assert (snapshot(engine), _dump(engine)) == (schema, rows)

        back = migrate.downgrade(engine, "-1")
        assert (back.before, back.after) == (ALL_REVISIONS[-1], ALL_REVISIONS[-2])
        assert migrate.status(engine).state == "behind"
        with pytest.raises(migrate.DatabaseNotReady, match="feishu-bridge db upgrade"):
            migrate.require_current(engine)
        migrate.upgrade(engine)
        assert (snapshot(engine), _dump(engine)) == (schema, rows)
    finally:
        engine.dispose()


def test_0005_gives_user_token_sources_to_their_owner(database_url):
    """Issue 15 item 11: a source read with a user's token becomes `owner` (its owner and the
    admins, in private chat), the others `allowed`; every row and child row stays, the new check
    holds, and a step back drops only the new columns."""
    from sqlalchemy.exc import IntegrityError

    engine = _engine(database_url)
    try:
        migrate.upgrade(engine, target="0004_coze_key_change_order")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO cache_sources (id, name, kind, token, as_user) VALUES "
                              "(1, 'shared', 'bitable', 'bascn1', NULL), "
                              "(2, 'private', 'bitable', 'bascn2', 'ou_owner')"))
            conn.execute(text("INSERT INTO cache_tables (source_id, table_id, name) VALUES "
                              "(1, 'tbl1', 'a'), (2, 'tbl2', 'b')"))
        before, columns = _dump(engine), _columns(engine)

        assert migrate.upgrade(engine, target="0005_source_visibility").after == "0005_source_visibility"
        assert _dump(engine, columns) == before
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT name, visibility, visible_chats FROM cache_sources ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [("shared", "allowed", None), ("private", "owner", None)]
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("UPDATE cache_sources SET visibility = 'everyone' WHERE id = 1"))

        migrate.downgrade(engine, "-1")
        assert _dump(engine) == before
    finally:
        engine.dispose()


def test_0006_keeps_every_grant_as_feishus_and_lets_providers_share_subjects(database_url):
    """Issue 17 item 1: every stored grant and history row is kept and becomes provider `feishu`
    (the token still opens); another provider may hold the same subject, one provider may not
    twice; a step back drops the other providers' rows and the columns, nothing else."""
    from sqlalchemy.exc import IntegrityError

    engine = _engine(database_url)
    try:
        migrate.upgrade(engine, target="0005_source_visibility")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO oauth_tokens (subject, display_name, access_token, refresh_token, expires_at, "
                "refresh_expires_at, scopes, status, generation, last_error) VALUES "
                "('ou_1', '甲', 'gAAAA-sealed-1', 'gAAAA-sealed-r1', :e, :e, 'offline_access', 'active', 3, "
                "NULL), "
                "('ou_2', '乙', 'gAAAA-sealed-2', NULL, :e, NULL, '', 'reauth_required', 1, 'revoked')"),
                {"e": NOW})
            conn.execute(text("INSERT INTO token_refreshes (subject, at, cause, outcome, error_code) VALUES "
                              "('ou_1', :t, 'login', 'authorized', NULL), "
                              "('ou_1', :t, 'on_demand', 'refreshed', NULL), "
                              "('ou_2', :t, 'proactive', 'permanent_error', 20064)"), {"t": NOW})
        before, columns = _dump(engine), _columns(engine)

        assert migrate.upgrade(engine, target="0006_provider_tokens").after == "0006_provider_tokens"
        assert _dump(engine, columns) == before
        with engine.connect() as conn:
            for table in ("oauth_tokens", "token_refreshes"):
                assert set(conn.execute(text(f"SELECT provider FROM {table}")).scalars()) == {"feishu"}
        with engine.begin() as conn:  # an external provider's grant for the same subject
            conn.execute(text("INSERT INTO oauth_tokens (provider, subject, access_token, expires_at) "
                              "VALUES ('ads', 'ou_1', 'gAAAA-sealed-ads', :e)"), {"e": NOW})
            conn.execute(text("INSERT INTO token_refreshes (provider, subject, at, cause, outcome) "
                              "VALUES ('ads', 'ou_1', :t, 'login', 'authorized')"), {"t": NOW})
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("INSERT INTO oauth_tokens (provider, subject, access_token, expires_at) "
                              "VALUES ('ads', 'ou_1', 'gAAAA-again', :e)"), {"e": NOW})
        assert "ix_token_refreshes_provider_subject" in {i["name"] for i in
                                                         inspect(engine).get_indexes("token_refreshes")}

        migrate.downgrade(engine, "0005_source_visibility")
        assert _dump(engine) == before
        with pytest.raises(IntegrityError), engine.begin() as conn:  # the old key is back
            conn.execute(text("INSERT INTO oauth_tokens (subject, access_token, expires_at) "
                              "VALUES ('ou_1', 'gAAAA-again', :e)"), {"e": NOW})
    finally:
        engine.dispose()


# -- batch mode: a revision that copies tables keeps triggers and child rows ----------------

BATCH_REVISION = textwrap.dedent('''
    """Test only: copy two tables the way SQLite batch mode does."""
    import sqlalchemy as sa
    from alembic import op

    revision = "9999_test_batch"
    down_revision = {head!r}
    branch_labels = None
    depends_on = None


    def _copy():  # SQLite copies the table (what any column change there needs); PostgreSQL alters
        return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


    def upgrade():
        with op.batch_alter_table("cache_sources", recreate=_copy()) as batch:
            batch.add_column(sa.Column("note", sa.Text()))
        with op.batch_alter_table("coze_outbox", recreate=_copy()) as batch:
            batch.add_column(sa.Column("note", sa.Text()))


    def downgrade():
        with op.batch_alter_table("coze_outbox", recreate=_copy()) as batch:
            batch.drop_column("note")
        with op.batch_alter_table("cache_sources", recreate=_copy()) as batch:
            batch.drop_column("note")
''')


def _add_test_revision(tmp_path: Path, monkeypatch, source: str) -> str:
    """Put a throw-away revision after HEAD (where the scripts are found, for this test only);
    returns its id."""
    versions = tmp_path / "versions"
    versions.mkdir(exist_ok=True)
    revision = re.search(r'revision = "([^"]+)"', source).group(1)
    (versions / f"{revision}.py").write_text(source.format(head=HEAD))
    monkeypatch.setattr(migrate, "VERSION_DIRS", [*migrate.VERSION_DIRS, versions])
    return revision


@pytest.fixture
def captured(settings, redis_conn, sandbox):
    """Services on a database at HEAD whose demo `customers` table has a Coze template (so its
    capture triggers write to coze_outbox)."""
    from bot.coze import templates

    services = build_services(settings)
    migrate.upgrade(services.engine, target=HEAD)
    create_demo_tables(services.engine)
    template = templates.create(services, customer_spec(sandbox[0]))
    yield services, template
    services.close()


def test_table_copying_revision_keeps_capture_triggers_and_child_rows(captured, tmp_path, monkeypatch):
    services, template = captured
    _add_test_revision(tmp_path, monkeypatch, BATCH_REVISION)
    engine = services.engine
    with engine.begin() as conn:
        for table, rows in _rows_for_every_table(template.id).items():
            for row in rows:
                conn.execute(insert(Base.metadata.tables[table]), row)
        conn.execute(insert(CUSTOMERS), [_customer(1)])
    before = _dump(engine)

    moved = migrate.upgrade(engine, target="9999_test_batch")
    assert moved.after == "9999_test_batch"
    after = _dump(engine)
    assert after["cache_records"] == before["cache_records"]  # no cascade from the copied parent
    assert len(after["coze_outbox"]) == len(before["coze_outbox"]) == 1
    with engine.begin() as conn:  # the trigger still writes into the copied outbox
        conn.execute(insert(CUSTOMERS), [_customer(2)])
        assert conn.execute(select(func.count()).select_from(CozeOutbox)).scalar() == 2

    migrate.downgrade(engine, HEAD)
    assert migrate.status(engine).state == "current"
    with engine.begin() as conn:
        conn.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == 2).values(phone="13600000000"))
        assert conn.execute(select(func.count()).select_from(CozeOutbox)).scalar() == 3
    assert _dump(engine)["cache_records"] == before["cache_records"]


# -- failures leave the database as it was ------------------------------------------------

FAILING_REVISION = textwrap.dedent('''
    """Test only: does part of its work, then fails."""
    from alembic import op

    revision = "9998_test_fails"
    down_revision = {head!r}
    branch_labels = None
    depends_on = None


    def upgrade():
        op.create_index("ix_test_half_done", "alerts", ["kind"])
        raise RuntimeError("the migration failed half-way")


    def downgrade():
        pass
''')


def test_a_failing_revision_changes_nothing(captured, tmp_path, monkeypatch):
    services, _template = captured
    failing = _add_test_revision(tmp_path, monkeypatch, FAILING_REVISION)
    engine = services.engine
    schema = snapshot(engine)
    with pytest.raises(RuntimeError, match="half-way"):
        migrate.upgrade(engine, target=failing)
    assert migrate.status(engine).current == HEAD
    assert snapshot(engine) == schema  # no half-made index; the capture triggers are back
    with engine.begin() as conn:
        conn.execute(insert(CUSTOMERS), [_customer(1)])
        assert conn.execute(select(func.count()).select_from(CozeOutbox)).scalar() == 1


def test_a_database_older_than_the_baseline_is_refused_untouched(database_url):
    """A build before 20096e1 lacked columns the baseline has: CREATE … IF NOT EXISTS cannot add
    them, so adopting it would stamp a schema that is not there."""
    engine = _engine(database_url)
    try:
        older = BASELINE_SQL.read_text(encoding="utf-8").replace(
            "    count_calls  INTEGER NOT NULL DEFAULT 0,  -- list requests made to size windows\n", "")
        with engine.begin() as conn:
            run_schema_sections(conn, older)
            conn.execute(insert(Base.metadata.tables["alerts"]), {"key": "k", "kind": "t", "message": "kept"})
        rows = _dump(engine)
        with pytest.raises(migrate.DatabaseNotReady, match=r"missing columns: export_runs\.count_calls"):
            migrate.upgrade(engine)
        assert migrate.status(engine).state == "unversioned"
        assert _dump(engine) == rows
    finally:
        engine.dispose()


def test_sqlite_upgrade_waits_for_writers_and_loses_no_capture(captured, tmp_path, monkeypatch):
    """A writer running through a table-copying upgrade: every row it inserts is captured (the
    triggers are never missing for a committed write), and an orphan row that was there before
    (foreign keys are off by default in SQLite tools) does not block the upgrade."""
    import threading

    services, _template = captured
    engine = services.engine
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's table copying; PostgreSQL alters in place")
    batch = _add_test_revision(tmp_path, monkeypatch, BATCH_REVISION)
    with engine.connect() as conn:  # an orphan, as a tool without foreign keys could leave
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.exec_driver_sql("INSERT INTO cache_pending (source_id, table_id, record_id, queued_at) "
                             "VALUES (999, 't', 'r', '2024-01-01 00:00:00')")
        conn.commit()
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
    done = threading.Event()
    written: list[int] = []

    def writer() -> None:
        i = 100
        while not done.is_set():
            with engine.begin() as conn:
                conn.execute(insert(CUSTOMERS), [_customer(i)])
            written.append(i)
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(written) < 5:  # the writer is going
            assert time.monotonic() < deadline
            time.sleep(0.01)
        migrate.upgrade(engine, target=batch)
        started = len(written)
        while len(written) < started + 5:  # and still going after the upgrade
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        done.set()
        thread.join(60)
    with engine.connect() as conn:
        captured = conn.execute(select(func.count()).select_from(CozeOutbox)).scalar()
    assert captured == len(written)
