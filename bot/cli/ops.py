"""`feishu-bridge config|worker|cron|web|listen|up|sandbox|events`: configuration, the bridge's
processes and the event receipts."""

from __future__ import annotations

import json
import signal
import sys

import click
from rich.console import Console
from rich.table import Table

from bot.cli.common import open_engine, settings_of
from bot.config import Settings
from bot.masking import mask, mask_url
from bot.migrate import require_current_url

# -- config ------------------------------------------------------------------------------


@click.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def config_check(ctx: click.Context, as_json: bool) -> None:
    """Print the effective configuration (secrets masked) and what a real Feishu app still needs.

    Exits 0 when something is merely missing: the sandbox needs none of it. Exits 1 on an error:
    a setting with which `web`/`up` refuse to start (no event secret, a short ADMIN_TOKEN), or
    EXPORT_POLL_SECONDS 0 while an export runs (polling is how its files arrive).
    """
    from bot.web.policy import startup_errors

    settings = settings_of(ctx)
    _refuse_polling_off(ctx, settings)
    rows = _config_rows(settings)
    missing = settings.missing_for_real_feishu()
    errors = startup_errors(settings)
    if as_json:
        click.echo(json.dumps({"settings": dict(rows), "missing_for_real_feishu": missing,
                               "errors": errors}, indent=2))
        ctx.exit(1 if errors else 0)
    table = Table(title="Feishu Bridge configuration", show_lines=False)
    table.add_column("setting")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)
    Console().print(EVENT_MODES[settings.feishu_event_mode])
    if missing:
        Console().print(f"[yellow]Missing for a real Feishu app:[/] {', '.join(missing)}")
        Console().print("The sandbox (`feishu-bridge up --sandbox`) needs none of these.")
    else:
        Console().print("[green]Everything a real Feishu app needs is set.[/]")
    if errors:  # one line on stderr, after the table
        raise click.ClickException("`web` and `up` would refuse to start: " + "; ".join(errors))


EVENT_MODES = {
    "webhook": (
        "Events: FEISHU_EVENT_MODE=webhook — Feishu POSTs each event to https://<this host>/webhook/event, "
        "which must be reachable from the internet (console: Events & Callbacks → subscription mode "
        "\"send to developer server\"). Set FEISHU_EVENT_MODE=websocket to need no public URL."),
    "websocket": (
        "Events: FEISHU_EVENT_MODE=websocket — `feishu-bridge listen` dials out to Feishu's long connection, "
        "no public URL needed (console: Events & Callbacks → subscription mode \"receive through a "
        "persistent connection\", self-built apps only); /webhook/event is closed."),
}


def refuse_unsafe_start(settings: Settings) -> None:
    """Web-serving processes do not start with settings that leave a surface open (one line)."""
    from bot.web.policy import startup_errors

    errors = startup_errors(settings)
    if errors:
        raise click.ClickException("refusing to start: " + "; ".join(errors))


def _refuse_polling_off(ctx: click.Context, settings: Settings) -> None:
    """Completion messages reach the bridge only by polling the contract bot's chat (the app's
    bot is not in it, so Feishu sends no event): with polling off a running export would wait
    for files that never come."""
    if settings.export_poll_seconds > 0:
        return
    run_id = _running_export(ctx)
    if run_id is not None:
        raise click.ClickException(
            f"EXPORT_POLL_SECONDS={settings.export_poll_seconds} turns off chat polling, the only way export "
            f"files reach the bridge, while export run {run_id} is running: set EXPORT_POLL_SECONDS to a "
            "positive number of seconds (default 30), or stop the run with `feishu-bridge export cancel`")


def _running_export(ctx: click.Context) -> int | None:
    """The running export's id, read through the schema-checked engine; None when there is no
    database (yet) or none reachable — `config check` must work before `db upgrade`."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.export.runner import running_run_id
    from bot.migrate import DatabaseNotReady

    try:
        with open_engine(ctx) as engine:
            return running_run_id(engine)
    except (DatabaseNotReady, SQLAlchemyError):
        return None


def _config_rows(settings: Settings) -> list[tuple[str, str]]:
    redis = settings.redis_url or f"(embedded, under {settings.var_dir / 'redis'})"
    return [
        ("FEISHU_APP_ID", settings.feishu_app_id or "(unset)"),
        ("FEISHU_APP_SECRET", mask(settings.feishu_app_secret.get_secret_value())),
        ("FEISHU_ENCRYPT_KEY", mask(settings.feishu_encrypt_key.get_secret_value())),
        ("FEISHU_VERIFICATION_TOKEN", mask(settings.feishu_verification_token.get_secret_value())),
        ("FEISHU_BASE_URL", settings.feishu_base_url),
        ("FEISHU_EVENT_MODE", settings.feishu_event_mode),
        ("DATABASE_URL", mask_url(settings.effective_database_url)),
        ("REDIS_URL", mask_url(redis)),
        ("ADMIN_TOKEN", mask(settings.admin_token.get_secret_value())),
        ("TOKEN_ENCRYPTION_KEY", mask(settings.token_encryption_key.get_secret_value())
         if settings.token_encryption_key.get_secret_value() else f"(file under {settings.var_dir})"),
        ("OAUTH_REDIRECT_URL", settings.effective_redirect_url),
        ("ADMIN_CHAT_ID", settings.admin_chat_id or "(unset: alerts are only logged)"),
        ("OAUTH_PROVIDERS", ", ".join(
            f"{name} (client {p.client_id}, secret {mask(p.client_secret.get_secret_value())})"
            for name, p in settings.oauth_providers.items()) or "(none)"),
        ("PIPELINE_MODULES", settings.pipeline_modules),
        ("HOST", settings.host),
        ("PORT", str(settings.port)),
        ("VAR_DIR", str(settings.var_dir)),
        ("LOG_LEVEL", settings.log_level),
    ]



# -- processes ---------------------------------------------------------------------------


@click.command()
@click.option("--queue", "-q", "queues", multiple=True, help="Queue(s) to serve (default: all).")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.pass_context
def worker(ctx: click.Context, queues: tuple[str, ...], burst: bool) -> None:
    """Run an RQ worker (with RQ's scheduler, so retries with backoff fire)."""
    from bot.logs import configure_logging
    from bot.processes.runtime import prepare
    from bot.processes.worker import run_worker
    from bot.queue import ALL_QUEUES

    unknown = set(queues) - set(ALL_QUEUES)
    if unknown:
        raise click.BadParameter(f"unknown queue(s) {sorted(unknown)}; known: {list(ALL_QUEUES)}")
    require_current_url(settings_of(ctx).effective_database_url)
    runtime = prepare(settings_of(ctx))
    configure_logging(runtime.settings)
    try:
        run_worker(runtime.settings, list(queues) or None, burst=burst)
    finally:
        runtime.shutdown()


@click.command()
@click.pass_context
def cron(ctx: click.Context) -> None:
    """Enqueue periodic jobs (RQ cron). Run one per deployment."""
    from bot.logs import configure_logging
    from bot.processes.cron import run_cron
    from bot.processes.runtime import prepare

    require_current_url(settings_of(ctx).effective_database_url)
    runtime = prepare(settings_of(ctx))
    configure_logging(runtime.settings)
    try:
        run_cron(runtime.settings)
    finally:
        runtime.shutdown()


@click.command()
@click.option("--idle-in-webhook-mode", is_flag=True,
              help="In webhook mode, say so and idle until stopped instead of exiting (the Procfile's "
                   "`listener` line: honcho and foreman stop every process when one exits).")
@click.pass_context
def listen(ctx: click.Context, idle_in_webhook_mode: bool) -> None:
    """Receive events over Feishu's long connection (FEISHU_EVENT_MODE=websocket).

    No public URL needed: this process dials out to Feishu, records each event as the webhook
    would and acknowledges it once recorded. Run 1–3 of them: Feishu delivers each event to one
    connected listener and re-sends what is not acknowledged within 3 s. Stops on SIGTERM/Ctrl-C
    after finishing the events in flight.
    """
    from bot.logs import configure_logging
    from bot.processes.runtime import prepare

    settings = settings_of(ctx)
    if settings.feishu_event_mode != "websocket":
        why = ("FEISHU_EVENT_MODE is webhook, so events arrive at /webhook/event; set FEISHU_EVENT_MODE="
               "websocket (and choose the long connection in the app's console) to listen")
        if not idle_in_webhook_mode:
            raise click.ClickException(why)
        _exit_cleanly_on_stop()  # before saying so: a supervisor may stop us as soon as it reads the line
        click.echo(f"listen: {why}. Idling until stopped.", err=True)
        while True:
            signal.pause()
    if not settings.feishu_app_id or not settings.feishu_app_secret.get_secret_value():
        raise click.ClickException("FEISHU_APP_ID and FEISHU_APP_SECRET are needed to open the long "
                                   "connection; run `feishu-bridge config check`")
    require_current_url(settings.effective_database_url)
    runtime = prepare(settings)  # sets the metrics directory: before anything imports bot.metrics
    configure_logging(runtime.settings)
    from bot.processes.listener import run_listener

    try:
        run_listener(runtime.settings)
    finally:
        runtime.shutdown()


def _exit_cleanly_on_stop() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))


@click.command()
@click.option("--port", type=int, default=None, help="Listen port (default: PORT).")
@click.pass_context
def web(ctx: click.Context, port: int | None) -> None:
    """Serve the web app under gunicorn (what the Procfile's web process runs)."""
    from bot.processes.runtime import prepare
    from bot.processes.web import exec_gunicorn

    refuse_unsafe_start(settings_of(ctx))
    require_current_url(settings_of(ctx).effective_database_url)
    runtime = prepare(settings_of(ctx))
    exec_gunicorn(runtime.child_env(PORT=str(port or runtime.settings.port), HOST=runtime.settings.host))


@click.command()
@click.option("--sandbox", "use_sandbox", is_flag=True,
              help="Also run the Feishu sandbox and point the bridge at it (no credentials needed).")
@click.option("--port", type=int, default=None, help="Web port (default: PORT, 8000).")
@click.option("--sandbox-port", type=int, default=9000, show_default=True)
@click.option("--workers", "n_workers", type=int, default=None, help="RQ workers (default: WORKERS, 2).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="With --sandbox: send /ping through the sandbox once started and wait for pong.")
@click.option("--events", "event_mode", type=click.Choice(["webhook", "websocket"]), default=None,
              help="How events arrive (default: FEISHU_EVENT_MODE, webhook): websocket also starts "
                   "a `listen` process on Feishu's long connection.")
@click.pass_context
def up(ctx: click.Context, use_sandbox: bool, port: int | None, sandbox_port: int,
       n_workers: int | None, check: bool, event_mode: str | None) -> None:
    """Run everything: web (gunicorn), workers, cron — and with --sandbox, the Feishu sandbox.

    Uses embedded defaults when DATABASE_URL / REDIS_URL are unset (SQLite and a private
    Redis under ./var). Ctrl-C stops it all.
    """
    from bot.processes.up import run_up

    if event_mode:
        ctx.obj["settings"] = settings_of(ctx).model_copy(update={"feishu_event_mode": event_mode})
    if not use_sandbox:  # the sandbox brings its own secrets and documented token
        refuse_unsafe_start(settings_of(ctx))
    sys.exit(run_up(settings_of(ctx), use_sandbox=use_sandbox, port=port, sandbox_port=sandbox_port,
                    n_workers=n_workers, check=check))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=9000, show_default=True)
@click.option("--webhook-url", default="http://127.0.0.1:8000/webhook/event", show_default=True,
              help="Where the sandbox delivers events (the bridge's webhook).")
@click.option("--redelivery", default="15,300,3600,21600", show_default=True,
              help="Seconds between re-deliveries after a non-200 answer (Feishu's schedule).")
@click.option("--plain-events", is_flag=True, help="Send events unencrypted.")
@click.option("--events", "event_mode", type=click.Choice(["webhook", "websocket"]), default="webhook",
              show_default=True,
              help="The app's subscription mode: POST events to --webhook-url, or deliver them over "
                   "the long connection to connected `listen` processes.")
def sandbox(host: str, port: int, webhook_url: str, redelivery: str, plain_events: bool,
            event_mode: str) -> None:
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
                           encrypt_events=not plain_events, event_mode=event_mode)
    target = webhook_url if event_mode == "webhook" else "long-connection clients"
    click.echo(f"Feishu sandbox on http://{host}:{port} → delivering events to {target}")
    serve(config, host, port)


# -- events --------------------------------------------------------------------------------


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", type=int, default=10, show_default=True, help="Recent receipts to list.")
@click.pass_context
def events(ctx: click.Context, as_json: bool, limit: int) -> None:
    """Event receipts: counts by status and the most recent ones."""
    from bot.intake import receipts

    with open_engine(ctx) as engine:
        counts = receipts.counts_by_status(engine)
        recent = receipts.latest(engine, limit)
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
