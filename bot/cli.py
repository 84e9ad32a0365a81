"""`feishu-bridge`: the command line. Thin: each command parses options and calls a module."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from bot.config import Settings, load_settings
from bot.masking import mask

console = Console(stderr=True)


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read settings from this file instead of ./.env.")
@click.pass_context
def main(ctx: click.Context, env_file: Path | None) -> None:
    """Feishu Bridge: a self-hosted Feishu (Lark) bot server.

    Feishu events arrive at POST /webhook/event, are recorded in the database and handled by
    RQ workers. Run `feishu-bridge up --sandbox` to see it work with no Feishu credentials.
    Configuration comes from environment variables (or .env); see `feishu-bridge config check`.
    """
    overrides = {"_env_file": str(env_file)} if env_file else {}
    ctx.obj = {"settings": load_settings(**overrides)}


# -- config ------------------------------------------------------------------------------


@main.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def config_check(ctx: click.Context, as_json: bool) -> None:
    """Print the effective configuration (secrets masked) and what a real Feishu app still needs.

    Exits 0 even when something is missing: the sandbox needs none of it.
    """
    settings = _settings(ctx)
    rows = _config_rows(settings)
    missing = settings.missing_for_real_feishu()
    if as_json:
        click.echo(json.dumps({"settings": dict(rows), "missing_for_real_feishu": missing}, indent=2))
        return
    table = Table(title="Feishu Bridge configuration", show_lines=False)
    table.add_column("setting")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)
    if missing:
        Console().print(f"[yellow]Missing for a real Feishu app:[/] {', '.join(missing)}")
        Console().print("The sandbox (`feishu-bridge up --sandbox`) needs none of these.")
    else:
        Console().print("[green]Everything a real Feishu app needs is set.[/]")


def _config_rows(settings: Settings) -> list[tuple[str, str]]:
    redis = settings.redis_url or f"(embedded, under {settings.var_dir / 'redis'})"
    return [
        ("FEISHU_APP_ID", settings.feishu_app_id or "(unset)"),
        ("FEISHU_APP_SECRET", mask(settings.feishu_app_secret.get_secret_value())),
        ("FEISHU_ENCRYPT_KEY", mask(settings.feishu_encrypt_key.get_secret_value())),
        ("FEISHU_VERIFICATION_TOKEN", mask(settings.feishu_verification_token.get_secret_value())),
        ("FEISHU_BASE_URL", settings.feishu_base_url),
        ("DATABASE_URL", _mask_url(settings.effective_database_url)),
        ("REDIS_URL", _mask_url(redis)),
        ("ADMIN_TOKEN", mask(settings.admin_token.get_secret_value())),
        ("TOKEN_ENCRYPTION_KEY", mask(settings.token_encryption_key.get_secret_value())
         if settings.token_encryption_key.get_secret_value() else f"(file under {settings.var_dir})"),
        ("OAUTH_REDIRECT_URL", settings.effective_redirect_url),
        ("ADMIN_CHAT_ID", settings.admin_chat_id or "(unset: alerts are only logged)"),
        ("HOST", settings.host),
        ("PORT", str(settings.port)),
        ("VAR_DIR", str(settings.var_dir)),
        ("LOG_LEVEL", settings.log_level),
    ]


def _mask_url(url: str) -> str:
    """Hide the password in scheme://user:password@host URLs."""
    from sqlalchemy.engine import make_url

    if "://" not in url or "@" not in url:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"


# -- db ----------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema management."""


@db.command("init")
@click.pass_context
def db_init(ctx: click.Context) -> None:
    """Create or update the schema from schema.sql (idempotent: safe on every release)."""
    from bot.db import init_schema, make_engine

    settings = _settings(ctx)
    engine = make_engine(settings.effective_database_url)
    try:
        sections = init_schema(engine)
    finally:
        engine.dispose()
    click.echo(f"schema applied ({', '.join(sections)}) to {_mask_url(settings.effective_database_url)}")


# -- processes ---------------------------------------------------------------------------


@main.command()
@click.option("--queue", "-q", "queues", multiple=True, help="Queue(s) to serve (default: all).")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.pass_context
def worker(ctx: click.Context, queues: tuple[str, ...], burst: bool) -> None:
    """Run an RQ worker (with RQ's scheduler, so retries with backoff fire)."""
    from bot.logs import configure_logging
    from bot.queue import ALL_QUEUES
    from bot.runtime import prepare
    from bot.worker import run_worker

    unknown = set(queues) - set(ALL_QUEUES)
    if unknown:
        raise click.BadParameter(f"unknown queue(s) {sorted(unknown)}; known: {list(ALL_QUEUES)}")
    runtime = prepare(_settings(ctx))
    configure_logging(runtime.settings)
    try:
        run_worker(runtime.settings, list(queues) or None, burst=burst)
    finally:
        runtime.shutdown()


@main.command()
@click.pass_context
def cron(ctx: click.Context) -> None:
    """Enqueue periodic jobs (RQ cron). Run one per deployment."""
    from bot.logs import configure_logging
    from bot.runtime import prepare
    from bot.worker import run_cron

    runtime = prepare(_settings(ctx))
    configure_logging(runtime.settings)
    try:
        run_cron(runtime.settings)
    finally:
        runtime.shutdown()


@main.command()
@click.option("--port", type=int, default=None, help="Listen port (default: PORT).")
@click.pass_context
def web(ctx: click.Context, port: int | None) -> None:
    """Serve the web app under gunicorn (what the Procfile's web process runs)."""
    import os

    from bot.runtime import prepare

    runtime = prepare(_settings(ctx))
    env = runtime.child_env(PORT=str(port or runtime.settings.port), HOST=runtime.settings.host)
    os.execvpe(sys.executable, [sys.executable, *gunicorn_argv()], env)


def gunicorn_argv() -> list[str]:
    return ["-m", "gunicorn", "-c", "python:bot.gunicorn_conf", "bot.app:create_app()"]


@main.command()
@click.option("--sandbox", "use_sandbox", is_flag=True,
              help="Also run the Feishu sandbox and point the bridge at it (no credentials needed).")
@click.option("--port", type=int, default=None, help="Web port (default: PORT, 8000).")
@click.option("--sandbox-port", type=int, default=9000, show_default=True)
@click.option("--workers", "n_workers", type=int, default=None, help="RQ workers (default: WORKERS, 2).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="With --sandbox: send /ping through the sandbox once started and wait for pong.")
@click.pass_context
def up(ctx: click.Context, use_sandbox: bool, port: int | None, sandbox_port: int,
       n_workers: int | None, check: bool) -> None:
    """Run everything: web (gunicorn), workers, cron — and with --sandbox, the Feishu sandbox.

    Uses embedded defaults when DATABASE_URL / REDIS_URL are unset (SQLite and a private
    Redis under ./var). Ctrl-C stops it all.
    """
    from bot.up import run_up

    sys.exit(run_up(_settings(ctx), use_sandbox=use_sandbox, port=port, sandbox_port=sandbox_port,
                    n_workers=n_workers, check=check))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=9000, show_default=True)
@click.option("--webhook-url", default="http://127.0.0.1:8000/webhook/event", show_default=True,
              help="Where the sandbox delivers events (the bridge's webhook).")
@click.option("--redelivery", default="15,300,3600,21600", show_default=True,
              help="Seconds between re-deliveries after a non-200 answer (Feishu's schedule).")
@click.option("--plain-events", is_flag=True, help="Send events unencrypted.")
def sandbox(host: str, port: int, webhook_url: str, redelivery: str, plain_events: bool) -> None:
    """Run the Feishu sandbox alone: a local emulator of the Feishu APIs the bridge uses.

    Its app credentials are fixed (see docs/sandbox.md); drive it with POST /sandbox/chat.
    """
    import logging

    from sandbox.server import serve
    from sandbox.state import SandboxConfig

    logging.basicConfig(level=logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    schedule = tuple(float(x) for x in redelivery.split(",") if x.strip())
    config = SandboxConfig(webhook_url=webhook_url, redelivery_schedule=schedule,
                           encrypt_events=not plain_events)
    click.echo(f"Feishu sandbox on http://{host}:{port} → delivering events to {webhook_url}")
    serve(config, host, port)


# -- auth ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _services(ctx: click.Context):
    from bot.runtime import prepare
    from bot.services import build_services

    runtime = prepare(_settings(ctx), metrics=False)
    services = build_services(runtime.settings)
    try:
        yield services
    finally:
        services.close()
        runtime.shutdown()


@main.group()
def auth() -> None:
    """Feishu user authorisation (OAuth): log in, see token health, refresh, log out."""


@auth.command("login")
@click.option("--browser/--no-browser", default=True, show_default=True,
              help="Open the authorisation page in a browser, if one is available.")
@click.option("--wait", "wait_seconds", type=int, default=300, show_default=True,
              help="Seconds to wait for the authorisation to arrive (0: print the URL and exit).")
@click.pass_context
def auth_login(ctx: click.Context, browser: bool, wait_seconds: int) -> None:
    """Print (and open) the Feishu authorisation URL, then wait until the web app's
    /oauth/callback has stored the grant. The web app must be running (`feishu-bridge up`)."""
    import time
    import webbrowser

    from bot.login import start_login

    with _services(ctx) as services:
        before = {g.subject: g.generation for g in services.user_tokens.grants()}
        url = start_login(services)
        click.echo("Open this URL and approve access (在飞书中打开此链接并授权):")
        click.echo(url, color=False)
        if browser:
            webbrowser.open(url)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            for grant in services.user_tokens.grants():
                if before.get(grant.subject) != grant.generation and grant.status == "active":
                    click.echo(f"Authorised as {grant.display_name or grant.subject} ({grant.subject}).")
                    if not grant.refresh_token:
                        click.echo("Warning: no refresh token — add the offline_access scope, or the "
                                   "token cannot be renewed.", err=True)
                    return
            time.sleep(1)
        if wait_seconds:
            raise click.ClickException("no authorisation arrived in time; is the web app running and "
                                       f"reachable at {services.settings.effective_redirect_url}?")


@auth.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def auth_status(ctx: click.Context, as_json: bool) -> None:
    """Per user: hours left on the access and refresh tokens, last refresh, last error, history."""
    from bot.models import utcnow

    with _services(ctx) as services:
        tokens = services.user_tokens
        now = utcnow()
        report = []

        def hours(at):
            return None if at is None else round((at - now).total_seconds() / 3600, 2)

        for grant in tokens.grants():
            report.append({
                "subject": grant.subject, "name": grant.display_name, "status": grant.status,
                "access_token": "****", "access_hours_left": hours(grant.expires_at),
                "refresh_hours_left": hours(grant.refresh_expires_at), "has_refresh_token":
                grant.refresh_token is not None, "scopes": grant.scopes,
                "last_refresh": grant.last_refresh.isoformat() if grant.last_refresh else None,
                "last_error": grant.last_error,
                "history": [
                    {"at": h.at.isoformat(), "cause": h.cause, "outcome": h.outcome,
                     "error_code": h.error_code, "error": h.error,
                     "access_seconds_left": h.access_remaining_seconds}
                    for h in tokens.history(grant.subject)
                ],
            })
    if as_json:
        click.echo(json.dumps({"grants": report}, ensure_ascii=False, indent=2))
        return
    out = Console()
    if not report:
        out.print("No Feishu user has authorised the bot. Run `feishu-bridge auth login`.")
        return
    for r in report:
        colour = "green" if r["status"] == "active" else "red"
        out.print(f"[bold]{r['name'] or r['subject']}[/] ({r['subject']}) — [{colour}]{r['status']}[/]")
        out.print(f"  access token: {r['access_hours_left']} h left · refresh token: "
                  f"{r['refresh_hours_left'] if r['has_refresh_token'] else 'none'} h left · "
                  f"last refresh: {r['last_refresh'] or 'never'}")
        if r["last_error"]:
            out.print(f"  last error: {r['last_error']}")
        table = Table("at (UTC)", "cause", "outcome", "code", "error")
        for h in r["history"]:
            table.add_row(h["at"][:19], h["cause"], h["outcome"], str(h["error_code"] or ""),
                          (h["error"] or "")[:60])
        out.print(table)


@auth.command("refresh")
@click.option("--subject", default=None, help="The user's open_id (default: the only authorised user).")
@click.pass_context
def auth_refresh(ctx: click.Context, subject: str | None) -> None:
    """Refresh the user's access token now (through the same locked path workers use)."""
    from bot.models import utcnow
    from bot.user_tokens import TokenError

    with _services(ctx) as services:
        try:
            services.user_tokens.refresh(subject)
        except TokenError as exc:
            raise click.ClickException(str(exc)) from exc
        grant = next(g for g in services.user_tokens.grants()
                     if g.subject == services.user_tokens.resolve_subject(subject))
        hours = (grant.expires_at - utcnow()).total_seconds() / 3600
        click.echo(f"Refreshed: access token valid for {hours:.1f} h.")


@auth.command("logout")
@click.option("--subject", default=None, help="The user's open_id (default: the only authorised user).")
@click.pass_context
def auth_logout(ctx: click.Context, subject: str | None) -> None:
    """Forget the user's tokens (history is kept)."""
    from bot.user_tokens import TokenError

    with _services(ctx) as services:
        try:
            gone = services.user_tokens.logout(subject)
        except TokenError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"Logged out {gone}.")


# -- caches --------------------------------------------------------------------------------


@main.group()
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
@click.pass_context
def sources_add(ctx: click.Context, url_or_token: str, name: str, kind: str | None, interval: str,
                as_user: str | None) -> None:
    """Declare a source: a Feishu URL (…/base/…, …/wiki/…) or a token."""
    from bot.caches import store
    from bot.caches.sources import SourceError, check_name, parse_interval, parse_source

    try:
        ref = parse_source(url_or_token, kind)
        seconds = parse_interval(interval)
        with _services(ctx) as services:
            store.add_source(services.engine, check_name(name), url_or_token, ref, seconds, as_user)
    except SourceError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Added {name} ({ref.kind}, every {seconds // 60} min). "
               f"Run `feishu-bridge sync {name} --once`.")


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def sources_list(ctx: click.Context, as_json: bool) -> None:
    """Declared sources and how their last sync went."""
    from bot.caches import store

    with _services(ctx) as services:
        rows = [{"name": s.name, "kind": s.kind, "token": s.token, "obj_type": s.obj_type, "title": s.title,
                 "interval_seconds": s.interval_seconds, "as_user": s.as_user, "status": s.status,
                 "last_success_at": s.last_success_at.isoformat() if s.last_success_at else None,
                 "last_error": s.last_error} for s in store.list_sources(services.engine)]
    if as_json:
        click.echo(json.dumps({"sources": rows}, ensure_ascii=False, indent=2))
        return
    table = Table("name", "kind", "title", "every", "status", "last success (UTC)", "error")
    for r in rows:
        table.add_row(r["name"], r["obj_type"] or r["kind"], r["title"] or "",
                      f"{r['interval_seconds'] // 60} min", r["status"],
                      (r["last_success_at"] or "never")[:19], (r["last_error"] or "")[:50])
    Console().print(table)


@sources.command("remove")
@click.argument("name")
@click.pass_context
def sources_remove(ctx: click.Context, name: str) -> None:
    """Forget a source and its cached data."""
    from bot.caches import store
    from bot.caches.sources import SourceError

    with _services(ctx) as services:
        try:
            store.remove_source(services.engine, name)
        except SourceError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"Removed {name}.")


@main.command()
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
    from bot.caches.sources import SourceError
    from bot.caches.sync import sync_source
    from bot.user_tokens import TokenError

    with _services(ctx) as services:
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
                        known = isinstance(exc, SourceError | TokenError)  # their messages say it all
                        failures.append({"source": name,
                                         "error": str(exc) if known else f"{type(exc).__name__}: {exc}"})
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
    Console().print(table)


@main.group()
def cache() -> None:
    """Look into the cache."""


@cache.command("summary")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def cache_summary(ctx: click.Context, as_json: bool) -> None:
    """Per source and table: records, fields, last sync, staleness."""
    from bot.caches import store

    with _services(ctx) as services:
        rows = store.summary(services.engine)
    if as_json:
        click.echo(json.dumps({"sources": rows}, ensure_ascii=False, indent=2))
        return
    table = Table("source", "table", "records", "fields", "last sync (UTC)", "stale")
    for s in rows:
        for t in s["tables"] or [{"name": "—", "records": 0, "fields": 0}]:
            table.add_row(s["source"], t["name"], str(t["records"]), str(t["fields"]),
                          (s["last_success_at"] or "never")[:19], "yes" if s["stale"] else "no")
    Console().print(table)


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
    from bot.caches import store
    from bot.caches.export import flat_rows, select_rows, write_table
    from bot.caches.query import QueryError, cell_text, parse_where
    from bot.caches.sources import SourceError

    with _services(ctx) as services:
        try:
            found_source, found_table = store.find_table(services.engine, source, table)
            fields = store.table_fields(services.engine, found_source.id, found_table.table_id)
            types = {f.name: f.type for f in fields}
            conditions = parse_where(where, list(types))
        except (SourceError, QueryError) as exc:
            raise click.ClickException(str(exc)) from exc
        rows = select_rows(store.iter_records(services.engine, found_source.id, found_table.table_id),
                           types, conditions, limit=limit)
    columns = [f.name for f in fields]
    for path, fmt in ((csv_path, "csv"), (xlsx_path, "xlsx")):
        if path is not None:
            write_table(flat_rows(rows, columns, types), columns, path, fmt)
            click.echo(f"Wrote {len(rows)} records to {path}", err=True)
    if as_json:
        click.echo(json.dumps({"table": found_table.name, "count": len(rows), "records": rows},
                              ensure_ascii=False, indent=2))
    elif csv_path is None and xlsx_path is None:
        out = Table("record_id", *columns[:8], title=f"{found_table.name}: {len(rows)} records")
        for r in rows[:50]:
            cells = [cell_text(r["fields"].get(c), types.get(c))[:30] for c in columns[:8]]
            out.add_row(r["record_id"], *cells)
        Console().print(out)
        if len(rows) > 50:
            click.echo(f"… {len(rows) - 50} more (use --json, --csv or --xlsx for all)", err=True)


# -- events --------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", type=int, default=10, show_default=True, help="Recent receipts to list.")
@click.pass_context
def events(ctx: click.Context, as_json: bool, limit: int) -> None:
    """Event receipts: counts by status and the most recent ones."""
    from bot import receipts
    from bot.db import make_engine

    engine = make_engine(_settings(ctx).effective_database_url)
    try:
        counts = receipts.counts_by_status(engine)
        recent = receipts.latest(engine, limit)
    finally:
        engine.dispose()
    rows = [
        {"id": r.id, "event_id": r.event_id, "event_type": r.event_type, "status": r.status,
         "attempts": r.attempts, "received_at": r.received_at.isoformat(), "last_error": r.last_error}
        for r in recent
    ]
    if as_json:
        click.echo(json.dumps({"counts": counts, "recent": rows}, ensure_ascii=False, indent=2))
        return
    out = Console()
    out.print("Receipts by status: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"))
    table = Table("id", "event type", "status", "attempts", "received (UTC)", "error")
    for r in rows:
        table.add_row(str(r["id"]), r["event_type"], r["status"], str(r["attempts"]),
                      r["received_at"][:19], (r["last_error"] or "")[:60])
    out.print(table)


def _register_groups() -> None:
    from bot.cli_coze import coze
    from bot.cli_export import export

    main.add_command(export)
    main.add_command(coze)


_register_groups()

if __name__ == "__main__":
    main()
