"""`feishu-bridge db …`: upgrade (and its `init` alias), current, history, downgrade, backup and
restore; processes refuse a database that is behind; `up` upgrades only what is its own."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bot.cli.main import main
from bot.config import Settings
from bot.db import make_engine
from bot.migrate import DatabaseNotReady, downgrade, status
from bot.migrations import ALL_REVISIONS, HEAD
from bot.processes.web import gunicorn_argv


def _env(tmp_path, **extra):
    base = {"FEISHU_APP_ID": "", "FEISHU_APP_SECRET": "", "FEISHU_ENCRYPT_KEY": "", "ADMIN_TOKEN": "",
            "FEISHU_VERIFICATION_TOKEN": "", "DATABASE_URL": "", "REDIS_URL": "",
            "VAR_DIR": str(tmp_path / "var")}
    base.update(extra)
    return base


def _cli(tmp_path, *args, **env):
    result = CliRunner().invoke(main, ["--env-file", str(tmp_path / "none.env"), *args],
                                env=_env(tmp_path, **env))
    return result


def _db_path(tmp_path):
    return tmp_path / "var" / "feishu-bridge.db"


def test_upgrade_creates_then_does_nothing_and_init_is_the_same(tmp_path):
    first = _cli(tmp_path, "db", "upgrade", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.output) | {"database": None} == {
        "database": None, "before": None, "after": HEAD, "backup": None}
    second = _cli(tmp_path, "db", "upgrade")
    assert second.exit_code == 0 and f"already at {HEAD}; nothing to do" in second.output
    alias = _cli(tmp_path, "db", "init")
    assert alias.exit_code == 0 and "nothing to do" in alias.output
    current = _cli(tmp_path, "db", "current", "--json")
    assert json.loads(current.output) == {"state": "current", "current": HEAD, "head": HEAD}
    history = _cli(tmp_path, "db", "history").output.splitlines()
    assert [line[2:].split()[0] for line in history] == list(ALL_REVISIONS)
    assert history[-1].startswith(f"* {HEAD}")


def test_behind_database_is_backed_up_then_upgraded(tmp_path):
    assert _cli(tmp_path, "db", "upgrade").exit_code == 0
    engine = make_engine(f"sqlite:///{_db_path(tmp_path)}")
    try:
        downgrade(engine, "-1")
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO alerts (key, kind, message) VALUES ('k', 'test', 'kept')")
    finally:
        engine.dispose()
    behind = _cli(tmp_path, "db", "current")
    needs = f"is at {ALL_REVISIONS[-2]}, this build needs {HEAD}: run `feishu-bridge db upgrade`"
    assert needs in behind.output
    upgraded = _cli(tmp_path, "db", "upgrade", "--json")
    doc = json.loads(upgraded.output)
    assert (doc["before"], doc["after"]) == (ALL_REVISIONS[-2], HEAD)
    backup = sqlite3.connect(doc["backup"])
    try:  # the backup is the database as it was before the upgrade
        assert backup.execute("SELECT version_num FROM alembic_version").fetchone()[0] == ALL_REVISIONS[-2]
        assert backup.execute("SELECT message FROM alerts").fetchall() == [("kept",)]
    finally:
        backup.close()


def test_backup_and_restore_round_trip(tmp_path):
    assert _cli(tmp_path, "db", "upgrade").exit_code == 0
    live = sqlite3.connect(_db_path(tmp_path))
    live.execute("INSERT INTO alerts (key, kind, message) VALUES ('a', 'test', 'before backup')")
    live.commit()
    saved = tmp_path / "saved.db"
    result = _cli(tmp_path, "db", "backup", str(saved))
    assert result.exit_code == 0 and f"backed up to {saved}" in result.output
    assert _cli(tmp_path, "db", "backup", str(saved)).exit_code != 0  # never overwrites

    live.execute("DELETE FROM alerts")
    live.execute("INSERT INTO alerts (key, kind, message) VALUES ('b', 'test', 'after backup')")
    live.commit()
    restored = _cli(tmp_path, "db", "restore", str(saved), "--yes")
    assert restored.exit_code == 0, restored.output
    assert live.execute("SELECT message FROM alerts").fetchall() == [("before backup",)]
    live.close()
    kept = sorted((tmp_path / "var" / "backups").glob("auto-before-restore-*.db"))
    assert len(kept) == 1  # what was replaced is kept too
    assert sqlite3.connect(kept[0]).execute("SELECT message FROM alerts").fetchall() == [("after backup",)]

    not_ours = tmp_path / "other.db"
    sqlite3.connect(not_ours).execute("CREATE TABLE t (x)").connection.commit()
    refused = _cli(tmp_path, "db", "restore", str(not_ours), "--yes")
    assert refused.exit_code != 0
    assert "not a Feishu Bridge database" in str(refused.exception) + refused.output


def test_backup_of_postgresql_names_pg_dump(tmp_path):
    result = _cli(tmp_path, "db", "backup", str(tmp_path / "x.db"),
                  DATABASE_URL="postgresql://u:secret-pw@127.0.0.1:1/d")
    assert result.exit_code != 0
    assert "pg_dump" in str(result.exception) + result.output
    assert "secret-pw" not in str(result.exception) + result.output


def test_web_refuses_a_database_that_is_behind(tmp_path):
    """gunicorn straight from the Procfile: one line naming the fix, exit 1, never serving."""
    assert _cli(tmp_path, "db", "upgrade").exit_code == 0
    engine = make_engine(f"sqlite:///{_db_path(tmp_path)}")
    downgrade(engine, "-1")
    engine.dispose()
    env = _env(tmp_path) | {"PATH": "/usr/bin:/bin", "PORT": "0"}
    done = subprocess.run([sys.executable, *gunicorn_argv()], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: the database at sqlite:///{_db_path(tmp_path)} is at {ALL_REVISIONS[-2]}, "
                      f"this build needs {HEAD}: run `feishu-bridge db upgrade`"]


def test_up_upgrades_its_own_database_but_not_a_configured_one(tmp_path):
    from bot.processes.up import _upgrade_if_ours

    embedded = Settings(_env_file=None, var_dir=tmp_path / "var")
    engine = make_engine(embedded.effective_database_url)
    try:
        _upgrade_if_ours(engine, embedded)  # empty → created
        downgrade(engine, "-1")
        _upgrade_if_ours(engine, embedded)  # behind, embedded → backed up and upgraded
        assert status(engine).state == "current"
        assert list((tmp_path / "var" / "backups").glob("auto-before-upgrade-from-*.db"))
        downgrade(engine, "-1")
        configured = Settings(_env_file=None, var_dir=tmp_path / "var",
                              database_url=embedded.effective_database_url)
        with pytest.raises(DatabaseNotReady, match="run `feishu-bridge db upgrade`"):
            _upgrade_if_ours(engine, configured)
        assert status(engine).state == "behind"
    finally:
        engine.dispose()


def test_backups_work_in_a_directory_whose_name_a_uri_would_misread(tmp_path):
    odd = tmp_path / "proj#2 50%"  # ("?" is already misread by SQLAlchemy URLs: not ours to fix here)
    odd.mkdir()
    assert _cli(odd, "db", "upgrade").exit_code == 0
    live = sqlite3.connect(_db_path(odd))
    live.execute("INSERT INTO alerts (key, kind, message) VALUES ('a', 'test', 'in the odd place')")
    live.commit()
    live.close()
    saved = odd / "saved#1.db"
    result = _cli(odd, "db", "backup", str(saved))
    assert result.exit_code == 0, result.output
    copy = sqlite3.connect(saved)
    assert copy.execute("SELECT message FROM alerts").fetchall() == [("in the odd place",)]
    copy.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [odd.name]  # no stray file from a misread URI


def test_restoring_the_oldest_automatic_backup_keeps_it(tmp_path):
    from bot.backup import KEEP_AUTOMATIC, automatic_backup

    assert _cli(tmp_path, "db", "upgrade").exit_code == 0
    url = f"sqlite:///{_db_path(tmp_path)}"
    backups = tmp_path / "var" / "backups"
    made = [automatic_backup(url, backups, "before-restore") for _ in range(KEEP_AUTOMATIC)]
    oldest = made[0]
    result = _cli(tmp_path, "db", "restore", str(oldest), "--yes")
    assert result.exit_code == 0, result.output
    assert oldest.is_file()  # the new "before restore" copy rotated out another one, not this
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"not a database at all" * 100)
    before = sorted(backups.iterdir())
    refused = _cli(tmp_path, "db", "restore", str(damaged), "--yes")
    assert refused.exit_code != 0
    assert sorted(backups.iterdir()) == before  # checked before anything was rotated
