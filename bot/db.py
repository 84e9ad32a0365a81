"""Engine, sessions and the schema script.

`schema.sql` is the readable current schema. Databases move between versions through the
Alembic migrations (`bot.migrate`); `init_schema` builds a fresh one straight from schema.sql.
The SQLAlchemy models in `bot.models` mirror it (tests reflect both databases and compare).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from bot.private import private_dir, private_file

SECTION_MARKER = re.compile(r"^-- ===== section: (?P<name>[a-z: ]+?) =====\s*$", re.MULTILINE)


def sqlite_file(url: str) -> Path | None:
    """The file behind a SQLite URL; None for another database, or one in memory."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    path = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or path in ("", ":memory:") or path.startswith("file:"):
        return None
    return Path(path)


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine with the pragmas SQLite needs for several processes writing at once."""
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path is not None:  # tokens and cached tables: 0600 in a 0700 directory (-wal/-shm follow)
            private_file(private_dir(path.parent) / path.name)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets readers run beside the single writer; NORMAL is durable across app crashes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def schema_path() -> Path:
    """schema.sql sits at the project root, beside the packages (checkout or editable install)."""
    candidates = [Path(__file__).resolve().parent.parent / "schema.sql", Path.cwd() / "schema.sql"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("schema.sql not found next to the bot package or in the cwd")


def split_sections(sql: str) -> dict[str, str]:
    """Map section name ("common", "dialect: postgresql", …) to its SQL text."""
    sections: dict[str, str] = {}
    matches = list(SECTION_MARKER.finditer(sql))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(sql)
        sections[match.group("name").strip()] = sql[match.end() : end]
    if "common" not in sections:
        raise ValueError("schema.sql has no '-- ===== section: common =====' marker")
    return sections


def _has_statements(sql: str) -> bool:
    code = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return bool(code.strip())


def sqlite_statements(sql: str) -> list[str]:
    """Split a script into statements (trigger bodies kept whole: sqlite3 knows where one ends)."""
    statements, pending = [], ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if _has_statements(pending):
                statements.append(pending.strip())
            pending = ""
    if _has_statements(pending):
        raise ValueError(f"incomplete SQL statement at the end of the script: {pending.strip()[:80]}")
    return statements


def run_schema_sections(connection: Connection, sql: str) -> list[str]:
    """Run the common section of a schema script, then the connected dialect's, on `connection`
    (inside its transaction). Returns the names of the sections that ran."""
    sections = split_sections(sql)
    dialect = connection.dialect.name
    to_run = ["common"] + ([f"dialect: {dialect}"] if f"dialect: {dialect}" in sections else [])
    applied = []
    cursor = connection.connection.cursor()
    try:
        for name in to_run:
            text = sections[name]
            if not _has_statements(text):
                continue
            if dialect == "sqlite":
                for statement in sqlite_statements(text):
                    cursor.execute(statement)
            else:
                # No parameters → psycopg uses the simple query protocol: many statements, one call.
                cursor.execute(text)
            applied.append(name)
    finally:
        cursor.close()
    return applied


def init_schema(engine: Engine, sql: str | None = None) -> list[str]:
    """Create the current schema straight from schema.sql and mark it as the newest revision.

    The quick way to a fresh database (tests, benches); `feishu-bridge db upgrade` gets to the
    same schema through the migrations, and tests/test_migrations.py proves the two agree. Safe
    to repeat. Returns the names of the sections that ran.
    """
    from bot.migrations import HEAD

    sql = sql if sql is not None else schema_path().read_text(encoding="utf-8")
    with engine.begin() as connection:
        applied = run_schema_sections(connection, sql)
        connection.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
        if connection.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 0:
            connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": HEAD})
    return applied


__all__ = [
    "init_schema",
    "make_engine",
    "make_session_factory",
    "run_schema_sections",
    "schema_path",
    "split_sections",
    "sqlite_file",
]
