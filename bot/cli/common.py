"""What every command group shares: the settings on the click context, services for the length
of one command, masked URLs, and the stderr console for progress and notes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click
from rich.console import Console

from bot.config import Settings

if TYPE_CHECKING:
    from bot.services import Services

console = Console(stderr=True)


def settings_of(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


@contextlib.contextmanager
def open_services(ctx: click.Context) -> Iterator[Services]:
    """Services for one command (the embedded Redis started if needed), closed afterwards."""
    from bot.processes.runtime import prepare
    from bot.services import build_services

    runtime = prepare(settings_of(ctx), metrics=False)
    services = build_services(runtime.settings)
    try:
        yield services
    finally:
        services.close()
        runtime.shutdown()


def mask_url(url: str) -> str:
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
