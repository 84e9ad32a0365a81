"""Backups of the embedded SQLite database, taken with SQLite's online backup API.

The API copies a consistent snapshot page by page while other processes keep writing (WAL
included), so a backup needs no downtime. PostgreSQL deployments use `pg_dump` instead
(docs/migrations.md).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.private import private_dir, private_file

AUTO_PREFIX = "auto-"
KEEP_AUTOMATIC = 5


class BackupError(RuntimeError):
    """A backup or restore that cannot be done: the message is one line for the user."""


def sqlite_path(database_url: str) -> Path:
    """The file behind a SQLite URL; BackupError for anything else."""
    from bot.db import sqlite_file

    path = sqlite_file(database_url)
    if path is not None:
        return path
    backend = make_url(database_url).get_backend_name()
    if backend != "sqlite":
        raise BackupError(f"`db backup`/`db restore` cover SQLite databases; this one is "
                          f"{backend}: use pg_dump / pg_restore (docs/migrations.md)")
    raise BackupError("an in-memory SQLite database cannot be backed up")


def backup(database_url: str, target: Path) -> int:
    """Copy the live database to `target` (a new file). Returns its size in bytes."""
    source_path = sqlite_path(database_url)
    if not source_path.is_file():
        raise BackupError(f"no database at {source_path}: nothing to back up")
    if target.exists():
        raise BackupError(f"{target} already exists: choose a new file name")
    private_dir(target.parent)  # a backup is the whole database: 0700 / 0600 (bot/private.py)
    source = sqlite3.connect(_read_only(source_path), uri=True)
    destination = sqlite3.connect(private_file(target))
    try:
        source.backup(destination)
        _check_backup(destination, target)  # what was written is a whole Feishu Bridge database
    except BaseException:
        destination.close()
        target.unlink(missing_ok=True)
        raise
    finally:
        destination.close()
        source.close()
    return target.stat().st_size


def restore(database_url: str, source_file: Path) -> None:
    """Replace the live database's content with a backup's (checked first), in place."""
    target_path = sqlite_path(database_url)
    if not source_file.is_file():
        raise BackupError(f"no backup file at {source_file}")
    source = sqlite3.connect(_read_only(source_file), uri=True)
    try:
        _check_backup(source, source_file)
        private_dir(target_path.parent)
        destination = sqlite3.connect(private_file(target_path), timeout=30)
        try:
            source.backup(destination)
        finally:
            destination.close()
    finally:
        source.close()


def check_backup_file(path: Path) -> None:
    """BackupError unless `path` is an intact Feishu Bridge database (checked before a restore
    replaces anything)."""
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    connection = sqlite3.connect(_read_only(path), uri=True)
    try:
        _check_backup(connection, path)
    finally:
        connection.close()


def _read_only(path: Path) -> str:
    """A read-only SQLite URI; as_uri() percent-encodes what a URI would misread (#, ?, %)."""
    return f"{path.resolve().as_uri()}?mode=ro"


def _check_backup(connection: sqlite3.Connection, path: Path) -> None:
    try:
        ok = connection.execute("PRAGMA quick_check").fetchone()[0]
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a SQLite database ({exc})") from exc
    if ok != "ok":
        raise BackupError(f"{path} is damaged (quick_check: {ok})")
    if "alembic_version" not in tables and "event_receipts" not in tables:
        raise BackupError(f"{path} is not a Feishu Bridge database (no alembic_version table)")


def automatic_backup(database_url: str, directory: Path, label: str, *, keep: Path | None = None) -> Path:
    """The backup taken before an upgrade, a downgrade or a restore (`label` says which, e.g.
    "before-upgrade-from-0001_baseline"). The newest few automatic ones of the same kind are
    kept; `keep` (a backup about to be restored) is never removed."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = directory / f"{AUTO_PREFIX}{label}-{stamp}.db"
    backup(database_url, target)
    kind = f"{AUTO_PREFIX}{label.split('-from-')[0]}"
    same_kind = sorted(directory.glob(f"{kind}*.db"), key=lambda p: p.stat().st_mtime)
    for old in same_kind[:-KEEP_AUTOMATIC]:
        if keep is None or old.resolve() != keep.resolve():
            old.unlink(missing_ok=True)
    return target
