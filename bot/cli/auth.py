"""`feishu-bridge auth …`: OAuth grants — Feishu users' (log in through the browser) and external
providers' (`provider-login`: a refresh token pasted once) — token health, refresh, log out."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from bot.cli.common import open_engine, open_services


@click.group()
def auth() -> None:
    """OAuth grants (Feishu users, external providers): log in, see token health, refresh, log out."""


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
    """Per grant (Feishu users, then external providers): hours left on the access and refresh
    tokens, last refresh, last error, history. Tokens are never shown."""
    from bot.models import utcnow
    from bot.tokens.store import list_grants, refresh_history

    with open_engine(ctx) as engine:  # reading needs neither Redis nor the SDK
        now = utcnow()
        report = []

        def hours(at):
            return None if at is None else round((at - now).total_seconds() / 3600, 2)

        for grant in list_grants(engine):
            report.append({
                "provider": grant.provider,
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
                    for h in refresh_history(engine, grant.subject, provider=grant.provider)
                ],
            })
    if as_json:
        click.echo(json.dumps({"grants": report}, ensure_ascii=False, indent=2))
        return
    out = Console()
    if not report:
        out.print("No grant is stored. Run `feishu-bridge auth login` (a Feishu user) or "
                  "`feishu-bridge auth provider-login NAME` (an external provider).")
        return
    for r in report:
        colour = "green" if r["status"] == "active" else "red"
        out.print(f"[bold]{r['provider']}[/] · [bold]{r['name'] or r['subject']}[/] ({r['subject']}) — "
                  f"[{colour}]{r['status']}[/]", highlight=False)
        refresh_left = r["refresh_hours_left"] if r["has_refresh_token"] else "none"
        out.print(f"  access token: {r['access_hours_left']} h left · refresh token: {refresh_left} h left · "
                  f"last refresh: {r['last_refresh'] or 'never'}", highlight=False)
        if r["last_error"]:
            out.print(f"  last error: {r['last_error']}", markup=False, highlight=False)
        table = Table("at (UTC)", "cause", "outcome", "code", "error")
        for h in r["history"]:
            table.add_row(h["at"][:19], h["cause"], h["outcome"], str(h["error_code"] or ""),
                          (h["error"] or "")[:60])
        out.print(table)


@auth.command("provider-login")
@click.argument("name")
@click.option("--subject", default="default", show_default=True,
              help="Whose grant this is, when a provider has several (an account id).")
@click.option("--refresh-token-stdin", "from_stdin", is_flag=True,
              help="Read the refresh token from standard input instead of a hidden prompt.")
@click.pass_context
def auth_provider_login(ctx: click.Context, name: str, subject: str, from_stdin: bool) -> None:
    """Store an external provider's refresh token (OAUTH_PROVIDERS names the provider's
    credentials) and refresh at once to verify it. Refresh tokens are single-use: from now on
    only the bridge may use this one — the stored pair is the rotated one."""
    import sys

    from bot.models import utcnow
    from bot.tokens.store import TokenError

    pipe = f"`feishu-bridge auth provider-login {name} --refresh-token-stdin`"
    with open_services(ctx) as services:  # the database and the provider first: then ask for the token
        tokens = services.provider_tokens
        try:
            tokens.store(name)
        except TokenError as exc:
            raise click.ClickException(str(exc)) from exc
        if from_stdin:
            refresh_token = sys.stdin.readline().strip()
        else:
            refresh_token = click.prompt(f"{name} refresh token", hide_input=True).strip()
        if not refresh_token:
            raise click.ClickException(f"no refresh token given: paste it at the prompt, or pipe it "
                                       f"with {pipe}")
        try:
            tokens.store_grant(name, subject, refresh_token=refresh_token)
            tokens.refresh(name, subject, cause="login")
        except TokenError as exc:
            raise click.ClickException(str(exc)) from exc
        grant = next(g for g in tokens.grants(name) if g.subject == subject)
        now = utcnow()
        hours = (grant.expires_at - now).total_seconds() / 3600
        days = (f"{(grant.refresh_expires_at - now).total_seconds() / 86400:.1f} days"
                if grant.refresh_expires_at else "an unknown time")
        click.echo(f"Stored and verified the {name} grant ({subject}): access token valid for {hours:.1f} h, "
                   f"refresh token for {days}.")


@auth.command("refresh")
@click.option("--subject", default=None, help="The user's open_id, or the provider grant's subject "
                                              "(default: the only one).")
@click.option("--provider", default=None, help="An external provider (default: Feishu user tokens).")
@click.pass_context
def auth_refresh(ctx: click.Context, subject: str | None, provider: str | None) -> None:
    """Refresh an access token now (through the same locked path workers use)."""
    from bot.models import utcnow
    from bot.tokens.store import TokenError

    with open_services(ctx) as services:
        store = services.user_tokens
        try:
            if provider:
                store = services.provider_tokens.store(provider)
            subject = store.resolve_subject(subject)
            before = store.grant(subject)
            store.refresh(subject)
            grant = store.grant(subject)
        except TokenError as exc:
            raise click.ClickException(str(exc)) from exc
        assert grant is not None
        hours = (grant.expires_at - utcnow()).total_seconds() / 3600
        if before is not None and grant.generation == before.generation:  # failed; the old token works
            again = "feishu-bridge auth refresh" + (f" --provider {provider}" if provider else "")
            raise click.ClickException(f"the refresh failed ({grant.last_error}); the access token still "
                                       f"works for {hours:.1f} h: run `{again}` again later")
        click.echo(f"Refreshed: access token valid for {hours:.1f} h.")


@auth.command("logout")
@click.option("--subject", default=None, help="The user's open_id, or the provider grant's subject "
                                              "(default: the only one).")
@click.option("--provider", default=None, help="An external provider (default: Feishu user tokens).")
@click.pass_context
def auth_logout(ctx: click.Context, subject: str | None, provider: str | None) -> None:
    """Forget the tokens of a grant (history is kept)."""
    from bot.tokens.store import TokenError

    with open_services(ctx) as services:
        try:
            if provider:
                gone = services.provider_tokens.logout(provider, subject)
            else:
                gone = services.user_tokens.logout(subject)
        except TokenError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"Logged out {gone}{f' ({provider})' if provider else ''}.")
