"""Schema versions: where a database stands against the migrations, and moving it.

Alembic does the moving (scripts in `bot/migrations/versions/`). Asking where a database stands
is a single query on `alembic_version` and needs no Alembic import, so every process and CLI
command can check it at start-up for free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Connection, Engine, event, inspect, text

from bot.migrations import HEAD

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_ID = 0x46425f4d  # "FB_M": the advisory lock that serialises upgrades on PostgreSQL
# Where revision scripts are found (tests add a directory with a throw-away revision).
VERSION_DIRS = [MIGRATIONS_DIR / "versions"]

State = Literal["empty", "unversioned", "behind", "current", "ahead"]
UPGRADE_HINT = "run `feishu-bridge db upgrade`"


class DatabaseNotReady(RuntimeError):
    """The database has no schema yet, or an older one: the message is one line for the user."""


@dataclass(frozen=True)
class SchemaStatus:
    state: State
    current: str | None  # the revision the database is at (None: not versioned)
    head: str

    @property
    def ready(self) -> bool:
        return self.state == "current"


def status(engine: Engine) -> SchemaStatus:
    from bot.migrations import ALL_REVISIONS

    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        current = None
        if "alembic_version" in tables:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if current is None:
        state: State = "unversioned" if tables - {"alembic_version"} else "empty"
    elif current == HEAD:
        state = "current"
    elif current in ALL_REVISIONS:
        state = "behind"
    else:
        state = "ahead"  # made by a newer build: never touch it
    return SchemaStatus(state, current, HEAD)


def describe(st: SchemaStatus, where: str) -> str:
    """One line for a user about a database that is not ready."""
    if st.state == "empty":
        return f"the database at {where} has no schema yet: {UPGRADE_HINT} (or `feishu-bridge up`)"
    if st.state in ("unversioned", "behind"):
        at = st.current or "an unversioned schema"
        return f"the database at {where} is at {at}, this build needs {st.head}: {UPGRADE_HINT}"
    if st.state == "ahead":
        return (f"the database at {where} is at {st.current}, newer than this build ({st.head}): "
                "upgrade feishu-bridge, or restore a backup")
    return f"the database at {where} is current ({st.head})"


def require_current(engine: Engine, where: str | None = None) -> None:
    """Raise DatabaseNotReady (one line naming the fix) unless the schema is at head."""
    st = status(engine)
    if not st.ready:
        raise DatabaseNotReady(describe(st, where or _masked(engine)))


def refuse_missing_sqlite_file(database_url: str) -> None:
    """A SQLite file that does not exist is an empty database: say so without creating it (a
    read command in an empty directory leaves it empty)."""
    from bot.db import sqlite_file
    from bot.masking import mask_url

    path = sqlite_file(database_url)
    if path is not None and not path.exists():
        raise DatabaseNotReady(describe(SchemaStatus("empty", None, HEAD), mask_url(database_url)))


def require_current_url(database_url: str) -> None:
    """`require_current` for a process about to start: its own short-lived engine."""
    from bot.db import make_engine

    refuse_missing_sqlite_file(database_url)
    engine = make_engine(database_url)
    try:
        require_current(engine)
    finally:
        engine.dispose()


def _masked(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


# -- moving a database (Alembic) ---------------------------------------------------------


@dataclass
class Moved:
    before: str | None
    after: str | None
    backup: Path | None = None
    restored_objects: list[str] = field(default_factory=list)  # SQLite triggers/views kept

    @property
    def changed(self) -> bool:
        return self.before != self.after


def upgrade(engine: Engine, *, target: str = "head", backup_dir: Path | None = None) -> Moved:
    """Bring the database to `target`. Idempotent: a database already at head is not touched
    at all. A SQLite file with anything to apply is backed up into `backup_dir` first."""
    before = status(engine)
    if before.state == "ahead":
        raise DatabaseNotReady(describe(before, _masked(engine)))
    if before.state == "current" and target == "head":
        return Moved(before.current, before.current)
    backup = _backup_first(engine, before, backup_dir, "upgrade")
    restored = _run(engine, lambda cfg: _command().upgrade(cfg, target))
    return Moved(before.current, status(engine).current, backup, restored)


def downgrade(engine: Engine, target: str, *, backup_dir: Path | None = None) -> Moved:
    """Step back (e.g. target "-1"): what the newer revisions added is dropped, so a SQLite file
    is backed up into `backup_dir` first."""
    before = status(engine)
    backup = _backup_first(engine, before, backup_dir, "downgrade")
    restored = _run(engine, lambda cfg: _command().downgrade(cfg, target))
    return Moved(before.current, status(engine).current, backup, restored)


def _backup_first(engine: Engine, before: SchemaStatus, backup_dir: Path | None, move: str) -> Path | None:
    from bot.backup import automatic_backup

    if backup_dir is None or engine.dialect.name != "sqlite" or before.state == "empty":
        return None
    label = f"before-{move}-from-{before.current or 'unversioned'}"
    return automatic_backup(engine.url.render_as_string(hide_password=False), backup_dir, label)


def history() -> list[tuple[str, str]]:
    """(revision, first docstring line), oldest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_config(None))
    return [(s.revision, (s.doc or "").strip().splitlines()[0] if s.doc else "")
            for s in reversed(list(scripts.walk_revisions()))]


def _command():
    from alembic import command

    return command


def _config(connection: Connection | None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(str(d) for d in VERSION_DIRS))
    config.attributes["connection"] = connection
    return config


def _run(engine: Engine, move) -> list[str]:
    """Run an Alembic command in one transaction: a failed migration leaves the database as it
    was. PostgreSQL takes an advisory lock first, so two releases at once take turns."""
    if engine.dialect.name == "sqlite":
        return _run_sqlite(engine.url, move)
    with engine.connect() as connection, connection.begin():
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        move(_config(connection))
    return []


def _run_sqlite(url, move) -> list[str]:
    """SQLite, on a connection of its own:

    * one explicit transaction (`BEGIN IMMEDIATE`: other writers wait for it, as SQLite makes
      DDL transactional only inside one, and Python's driver opens none for DDL);
    * foreign keys off, set before it begins: batch mode's DROP TABLE would otherwise cascade
      into child rows. Only violations the migration *adds* fail it (and roll it back);
    * triggers and views set aside and put back inside it: SQLite refuses to rename a table while
      a trigger elsewhere names a table that is, for that moment, missing — the Coze capture
      triggers name coze_outbox. A writer never sees the database without them.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    migrating = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30, "isolation_level": None})

    @event.listens_for(migrating, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(migrating, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with migrating.connect() as connection, connection.begin():
            kept = _set_aside_triggers_and_views(connection)
            broken_before = _foreign_key_problems(connection)
            move(_config(connection))
            restored = _put_back(connection, kept)
            added = _foreign_key_problems(connection) - broken_before
            if added:
                raise DatabaseNotReady(f"the migration would leave {len(added)} rows with broken foreign "
                                       f"keys (first: {sorted(added)[0]}); nothing was changed")
    finally:
        migrating.dispose()
    return restored


def _foreign_key_problems(connection: Connection) -> set[tuple]:
    return {tuple(row) for row in connection.exec_driver_sql("PRAGMA foreign_key_check")}


def _set_aside_triggers_and_views(connection: Connection) -> list[tuple[str, str, str]]:
    rows = connection.exec_driver_sql(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('trigger', 'view') AND sql IS NOT NULL"
    ).fetchall()
    for kind, name, _sql in rows:
        connection.exec_driver_sql(f'DROP {kind.upper()} IF EXISTS "{name}"')
    return [(kind, name, sql) for kind, name, sql in rows]


def _put_back(connection: Connection, kept: list[tuple[str, str, str]]) -> list[str]:
    existing = {r[0] for r in connection.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type IN ('trigger', 'view')")}
    restored, failed = [], []
    for kind, name, sql in sorted(kept, key=lambda k: k[0] != "view"):  # views first: triggers may use them
        if name in existing:
            continue
        try:
            connection.exec_driver_sql(sql)
            restored.append(name)
        except Exception as exc:  # a migration changed what it names: say which, keep going
            failed.append(f"{kind} {name}: {exc}")
    if failed:
        raise DatabaseNotReady("the migration would break " + "; ".join(failed) + "; nothing was changed")
    return restored
