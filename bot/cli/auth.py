"""`feishu-bridge auth …`: Feishu user authorisation (OAuth) — log in, token health, refresh, log out."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from bot.cli.common import open_engine, open_services


@click.group()
def auth() -> None:
    """Feishu user authorisation (OAuth): log in, see token health, refresh, log out."""


@auth.command("login")
@click.option("--browser/--no-browser", default=True, show_default=True,
              help="Open the authorisation page in a browser, if one is available.")
@click.option("--wait", "wait_seconds", type=int, default=300, show_default=True,
              help="Seconds to wait for the authorisation to arrive (0: print the URL and exit).")
@click.pass_context
def auth_login(ctx: click.Context, browser: bool, wait_seconds: int) -> None:
    """Print (and open) a one-time login link (ten minutes) to the web app, which sends the
    browser on to Feishu's authorisation page; then wait until its /oauth/callback has stored
    the grant. The web app must be running (`feishu-bridge up`)."""
    import time
    import webbrowser

    from bot.tokens.login import login_link

    with open_services(ctx) as services:
        before = {g.subject: g.generation for g in services.user_tokens.grants()}
        url = login_link(services)
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
    from bot.tokens.user_tokens import list_grants, refresh_history

    with open_engine(ctx) as engine:  # reading needs neither Redis nor the SDK
        now = utcnow()
        report = []

        def hours(at):
            return None if at is None else round((at - now).total_seconds() / 3600, 2)

        for grant in list_grants(engine):
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
                    for h in refresh_history(engine, grant.subject)
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
    from bot.tokens.user_tokens import TokenError

    with open_services(ctx) as services:
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
    from bot.tokens.user_tokens import TokenError

    with open_services(ctx) as services:
        try:
            gone = services.user_tokens.logout(subject)
        except TokenError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"Logged out {gone}.")

