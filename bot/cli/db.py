"""`feishu-bridge db …`: the schema's version (upgrade, current, history, downgrade) and
backups of the embedded SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bot.cli.common import settings_of
from bot.masking import mask_url


@click.group()
def db() -> None:
    """Database schema versions and backups (docs/migrations.md)."""


def _engine(ctx: click.Context):
    from bot.db import make_engine

    return make_engine(settings_of(ctx).effective_database_url)


def _exists(database_url: str) -> bool:
    """False for a SQLite file not there yet (asking about it must not create it)."""
    from bot.migrate import DatabaseNotReady, refuse_missing_sqlite_file

    try:
        refuse_missing_sqlite_file(database_url)
    except DatabaseNotReady:
        return False
    return True


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.option("--no-backup", is_flag=True, help="Skip the automatic backup of a SQLite database.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str, no_backup: bool, as_json: bool) -> None:
    """Create the schema, or bring it to the newest revision. Safe to run on every release.

    A SQLite database with anything to apply is backed up first (to VAR_DIR/backups; the newest
    five automatic backups of each kind are kept).
    A database made before migrations existed is adopted without losing rows.
    """
    from bot.migrate import upgrade

    settings = settings_of(ctx)
    engine = _engine(ctx)
    try:
        moved = upgrade(engine, target=revision,
                        backup_dir=None if no_backup else settings.var_dir / "backups")
    finally:
        engine.dispose()
    where = mask_url(settings.effective_database_url)
    if as_json:
        click.echo(json.dumps({"database": where, "before": moved.before, "after": moved.after,
                               "backup": str(moved.backup) if moved.backup else None}))
    elif not moved.changed:
        click.echo(f"{where}: already at {moved.after}; nothing to do")
    else:
        click.echo(f"{where}: {moved.before or 'empty'} → {moved.after}"
                   + (f" (backup: {moved.backup})" if moved.backup else ""))


@db.command("init")
@click.pass_context
def db_init(ctx: click.Context) -> None:
    """Same as `db upgrade` (kept for Procfiles and scripts written before migrations)."""
    ctx.invoke(db_upgrade)


@db.command("current")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def db_current(ctx: click.Context, as_json: bool) -> None:
    """The database's revision, and whether it is the one this build needs."""
    from bot.migrate import SchemaStatus, describe, status
    from bot.migrations import HEAD

    settings = settings_of(ctx)
    st = SchemaStatus("empty", None, HEAD)
    if _exists(settings.effective_database_url):
        engine = _engine(ctx)
        try:
            st = status(engine)
        finally:
            engine.dispose()
    if as_json:
        click.echo(json.dumps({"state": st.state, "current": st.current, "head": st.head}))
        return
    click.echo(describe(st, mask_url(settings.effective_database_url)))


@db.command("history")
@click.pass_context
def db_history(ctx: click.Context) -> None:
    """Every revision, oldest first; `*` marks where the database is."""
    from bot.migrate import history, status

    current = None
    if _exists(settings_of(ctx).effective_database_url):
        engine = _engine(ctx)
        try:
            current = status(engine).current
        finally:
            engine.dispose()
    for revision, title in history():
        click.echo(f"{'*' if revision == current else ' '} {revision}  {title}")


@db.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def db_downgrade(ctx: click.Context, revision: str, yes: bool) -> None:
    """Step the schema back to REVISION, such as -1 (one step).

    Back up first: a downgrade drops what the newer revisions added."""
    from bot.migrate import downgrade

    if not yes:
        click.confirm(f"Downgrade the database to {revision}?", abort=True)
    engine = _engine(ctx)
    try:
        moved = downgrade(engine, revision, backup_dir=settings_of(ctx).var_dir / "backups")
    finally:
        engine.dispose()
    click.echo(f"{moved.before} → {moved.after or 'empty'}"
               + (f" (backup: {moved.backup})" if moved.backup else ""))


@db.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def db_backup(ctx: click.Context, file: Path) -> None:
    """Copy the embedded SQLite database to FILE while the bridge keeps running.

    PostgreSQL: use pg_dump (docs/migrations.md)."""
    from bot.backup import backup

    size = backup(settings_of(ctx).effective_database_url, file)
    click.echo(f"backed up to {file} ({size / 1024:.0f} KiB)")


@db.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def db_restore(ctx: click.Context, file: Path, yes: bool) -> None:
    """Replace the SQLite database's content with the backup FILE. Stop the bridge first; the
    current content is backed up to VAR_DIR/backups before it is replaced."""
    from bot.backup import automatic_backup, check_backup_file, restore, sqlite_path
    from bot.processes import stackfile

    settings = settings_of(ctx)
    url = settings.effective_database_url
    check_backup_file(file)  # before anything is replaced or rotated
    running = stackfile.read(ctx.obj.get("home_var_dir", settings.var_dir))
    if running is not None:
        raise click.ClickException(f"`feishu-bridge up` is running on this database (pid {running.pid}): "
                                   "stop it first, then restore")
    if not yes:
        click.confirm(f"Replace {mask_url(url)} with {file}?", abort=True)
    had_content = sqlite_path(url).is_file()
    safety = (automatic_backup(url, settings.var_dir / "backups", "before-restore", keep=file)
              if had_content else None)
    restore(url, file)
    click.echo(f"restored {file}" + (f" (previous content kept in {safety})" if safety else ""))
