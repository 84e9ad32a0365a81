"""`feishu-bridge sources|sync|cache …`: declare Feishu documents to mirror, sync them, read the cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from bot.caches.visibility import KINDS as VISIBILITIES
from bot.cli.common import open_engine, open_services, table_console

# -- caches --------------------------------------------------------------------------------


@click.group()
def sources() -> None:
    """Feishu documents to mirror into the database (bitables; wiki URLs are resolved)."""


@sources.command("add")
@click.argument("url_or_token")
@click.option("--name", required=True, help="Short name, e.g. hr_inventory (lower-case, digits, _).")
@click.option("--kind", type=click.Choice(["bitable", "sheet", "doc", "wiki", "wiki-space"]), default=None,
              help="What the token is (guessed from URLs and legacy token prefixes); wiki-space: a wiki "
                   "node and every document under it.")
@click.option("--interval", default="1h", show_default=True, help="How often to sync: 30m, 1h, 2d, …")
@click.option("--as-user", default=None, help="Read as this authorised user (open_id) instead of the app.")
@click.option("--visibility", type=click.Choice(VISIBILITIES), default=None,
              help="Who may read it in chat: allowed (CHAT_ALLOWED_CHATS; the default without --as-user), "
                   "owner (the --as-user user and admins, private chat only; the default with it), "
                   "chats (the --chats listed). Admins may always read it in their private chat.")
@click.option("--chats", default=None, help="For --visibility chats: chat ids, comma-separated (oc_…,oc_…).")
@click.pass_context
def sources_add(ctx: click.Context, url_or_token: str, name: str, kind: str | None, interval: str,
                as_user: str | None, visibility: str | None, chats: str | None) -> None:
    """Declare a source: a Feishu URL (…/base/…, …/wiki/…) or a token."""
    from bot.caches import store
    from bot.caches.sources import SourceError, check_name, parse_interval, parse_source
    from bot.caches.visibility import describe, parse_visibility

    try:
        ref = parse_source(url_or_token, kind)
        seconds = parse_interval(interval)
        shown = parse_visibility(visibility, chats, as_user)
        with open_services(ctx) as services:
            store.add_source(services.engine, check_name(name), url_or_token, ref, seconds, as_user, shown)
    except SourceError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Added {name} ({ref.kind}, every {seconds // 60} min; in chat: {describe(shown, as_user)}). "
               f"Run `feishu-bridge sync {name} --once`.")


@sources.command("visibility")
@click.argument("name")
@click.argument("visibility", type=click.Choice(VISIBILITIES))
@click.option("--chats", default=None,
              help="For `chats`: chat ids, comma-separated (oc_…,oc_…); replaces the list.")
@click.pass_context
def sources_visibility(ctx: click.Context, name: str, visibility: str, chats: str | None) -> None:
    """Change who may read source NAME in chat: allowed, owner or chats (see `sources add --help`)."""
    from bot.caches import store
    from bot.caches.sources import SourceError
    from bot.caches.visibility import describe, stored

    with open_engine(ctx) as engine:
        try:
            source = store.set_visibility(engine, name, visibility, chats)
        except SourceError as exc:
            raise click.ClickException(str(exc)) from exc
    shown = stored(source.visibility, source.visible_chats)
    click.echo(f"{name} in chat: {describe(shown, source.as_user)}.")


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def sources_list(ctx: click.Context, as_json: bool) -> None:
    """Declared sources and how their last sync went."""
    from bot.caches import store
    from bot.caches.sources import events_status
    from bot.caches.visibility import describe, stored

    with open_engine(ctx) as engine:
        found = [(s, stored(s.visibility, s.visible_chats)) for s in store.list_sources(engine)]
        rows = [{"name": s.name, "kind": s.kind, "token": s.token, "obj_type": s.obj_type, "title": s.title,
                 "interval_seconds": s.interval_seconds, "as_user": s.as_user, "status": s.status,
                 "visibility": shown.kind, "visible_chats": list(shown.chats),
                 "in_chat": describe(shown, s.as_user),
                 "last_success_at": s.last_success_at.isoformat() if s.last_success_at else None,
                 "last_error": s.last_error,
                 "events": events_status(s.obj_type, s.subscribed_at is not None, s.events_error,
                                         s.interval_seconds)} for s, shown in found]
    if as_json:
        click.echo(json.dumps({"sources": rows}, ensure_ascii=False, indent=2))
        return
    table = Table("name", "kind", "title", "every", "in chat", "status", "last success (UTC)", "updates",
                  "error")
    for r in rows:
        table.add_row(r["name"], r["obj_type"] or r["kind"], r["title"] or "",
                      f"{r['interval_seconds'] // 60} min", r["in_chat"], r["status"],
                      (r["last_success_at"] or "never")[:19], r["events"] or "", (r["last_error"] or "")[:50])
    table_console().print(table)


@sources.command("remove")
@click.argument("name")
@click.pass_context
def sources_remove(ctx: click.Context, name: str) -> None:
    """Forget a source and its cached data."""
    from bot.caches import store
    from bot.caches.sources import SourceError

    with open_services(ctx) as services:
        try:
            store.remove_source(services.engine, name)
        except SourceError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"Removed {name}.")


@click.command()
@click.argument("names", nargs=-1)
@click.option("--once", is_flag=True, help="Sync once and exit (default: keep syncing every --interval).")
@click.option("--force", is_flag=True, help="Sync even if the cache is younger than its interval.")
@click.option("--interval", type=float, default=None,
              help="Hours between rounds when not --once (default: each source's own interval).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def sync(ctx: click.Context, names: tuple[str, ...], once: bool, force: bool, interval: float | None,
         as_json: bool) -> None:
    """Sync sources (all, or the NAMES given) into the cache, with a progress bar and a summary.

    Same as the old scripts: `sync --once --force` refreshes everything now; `sync --interval 2`
    keeps running and syncs every 2 hours. Normally the workers do this on schedule.
    """
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from bot.caches import store
    from bot.caches.sync import sync_source
    from bot.cli.errors import explain

    with open_services(ctx) as services:
        while True:
            chosen = list(names) or [s.name for s in store.list_sources(services.engine)]
            if not chosen:
                raise click.ClickException("no sources yet; add one with `feishu-bridge sources add`")
            results, failures = [], []
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn())
            with Progress(*columns, console=Console(stderr=True), disable=as_json) as progress:
                for name in chosen:
                    task = progress.add_task(f"sync {name}", total=None)
                    try:
                        result = sync_source(services, name, force=force,
                                             progress=lambda n, t=task: progress.advance(t, n))
                        results.append(result)
                    except Exception as exc:  # a sync failure is reported, the others still run
                        failures.append({"source": name, "error": explain(exc, services.settings)})
                    progress.update(task, total=progress.tasks[task].completed or 1,
                                    completed=progress.tasks[task].completed or 1)
            _print_sync_summary(results, failures, as_json)
            if once:
                sys.exit(1 if failures else 0)
            every = interval * 3600 if interval else min(
                s.interval_seconds for s in store.list_sources(services.engine) if s.name in chosen)
            click.echo(f"Next round in {every / 3600:.2f} h (Ctrl-C to stop).", err=True)
            time.sleep(every)


def _print_sync_summary(results, failures, as_json: bool) -> None:
    rows = [{"source": r.source, "outcome": r.outcome, "tables": r.tables, "records": r.records,
             "api_calls": r.api_calls, "seconds": round(r.seconds, 2)} for r in results]
    if as_json:
        click.echo(json.dumps({"results": rows, "failures": failures}, ensure_ascii=False, indent=2))
        return
    table = Table("source", "outcome", "tables", "records", "API calls", "seconds")
    for r in rows:
        table.add_row(r["source"], r["outcome"], str(r["tables"]), str(r["records"]), str(r["api_calls"]),
                      str(r["seconds"]))
    for f in failures:
        table.add_row(f["source"], "[red]failed[/]", "", "", "", f["error"][:60])
    table_console().print(table)


@click.group()
def cache() -> None:
    """Look into the cache."""


@cache.command("summary")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def cache_summary(ctx: click.Context, as_json: bool) -> None:
    """Per source and table: records, fields, last sync, staleness."""
    from bot.caches import store

    with open_engine(ctx) as engine:
        rows = store.summary(engine)
    if as_json:
        click.echo(json.dumps({"sources": rows}, ensure_ascii=False, indent=2))
        return
    table = Table("source", "table", "records", "fields", "full read (UTC)", "formulas (UTC)", "stale")
    for s in rows:
        for t in s["tables"] or [{"name": "—", "records": 0, "fields": 0}]:
            table.add_row(s["source"], t["name"], str(t["records"]), str(t["fields"]),
                          _minute(t.get("full_refresh_at") or s["last_success_at"]),
                          _minute(t.get("formulas_refreshed_at")), "yes" if s["stale"] else "no")
    for s in rows:
        if s["events"] and s["events"].startswith("no change events"):
            table_console().print(f"{s['source']}: {s['events']}")
    table_console().print(table)


def _minute(iso: str | None) -> str:
    return iso[:16].replace("T", " ") if iso else "—"


@cache.command("query")
@click.argument("source")
@click.argument("table")
@click.option("--where", "where", multiple=True, help="FIELD=VALUE (repeatable; all must match).")
@click.option("--limit", type=int, default=None, help="At most this many records.")
@click.option("--json", "as_json", is_flag=True, help="Records as JSON, value shapes as Feishu sends them.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a CSV file (one text column per field).")
@click.option("--xlsx", "xlsx_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write an Excel file (one text column per field).")
@click.pass_context
def cache_query(ctx: click.Context, source: str, table: str, where: tuple[str, ...], limit: int | None,
                as_json: bool, csv_path: Path | None, xlsx_path: Path | None) -> None:
    """Records of a cached TABLE (its name or id) of SOURCE, optionally filtered."""
    from bot.caches.export import write_table
    from bot.caches.lookup import query_table
    from bot.caches.query import QueryError, cell_text
    from bot.caches.sources import SourceError

    with open_services(ctx) as services:
        try:
            found = query_table(services.engine, source, table, where, limit=limit)
        except (SourceError, QueryError) as exc:
            raise click.ClickException(str(exc)) from exc
    rows, columns, types = found.rows, found.columns, found.types
    for path, fmt in ((csv_path, "csv"), (xlsx_path, "xlsx")):
        if path is not None:
            write_table(found.flat(), columns, path, fmt)
            click.echo(f"Wrote {len(rows)} records to {path}", err=True)
    if as_json:
        click.echo(json.dumps({"table": found.table.name, "count": len(rows), "records": rows},
                              ensure_ascii=False, indent=2))
    elif csv_path is None and xlsx_path is None:
        out = Table("record_id", *columns[:8], title=f"{found.table.name}: {len(rows)} records")
        for r in rows[:50]:
            cells = [cell_text(r["fields"].get(c), types.get(c))[:30] for c in columns[:8]]
            out.add_row(r["record_id"], *cells)
        Console().print(out)
        if len(rows) > 50:
            click.echo(f"… {len(rows) - 50} more (use --json, --csv or --xlsx for all)", err=True)
