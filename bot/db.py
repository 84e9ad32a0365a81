"""Engine, sessions and schema initialisation.

`schema.sql` is the source of truth; `init_schema` applies its common section plus the
section for the connected dialect. The SQLAlchemy models in `bot.models` mirror it (a test
reflects both databases and compares).
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

SECTION_MARKER = re.compile(r"^-- ===== section: (?P<name>[a-z: ]+?) =====\s*$", re.MULTILINE)


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine with the pragmas SQLite needs for several processes writing at once."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
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


def init_schema(engine: Engine, sql: str | None = None) -> list[str]:
    """Apply schema.sql; idempotent. Returns the names of the sections that ran."""
    sql = sql if sql is not None else schema_path().read_text(encoding="utf-8")
    sections = split_sections(sql)
    dialect_section = f"dialect: {engine.dialect.name}"
    to_run = ["common"] + ([dialect_section] if dialect_section in sections else [])
    applied = []
    raw = engine.raw_connection()
    try:
        for name in to_run:
            text = sections[name]
            if not _has_statements(text):
                continue
            if engine.dialect.name == "sqlite":
                raw.driver_connection.executescript(text)  # type: ignore[union-attr]
            else:
                # No parameters → psycopg uses the simple query protocol: many statements, one call.
                cursor = raw.cursor()
                cursor.execute(text)
                cursor.close()
            applied.append(name)
        raw.commit()
    finally:
        raw.close()
    return applied


__all__ = [
    "init_schema",
    "make_engine",
    "make_session_factory",
    "schema_path",
    "split_sections",
]
