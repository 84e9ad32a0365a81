"""What every command group shares: the settings on the click context (attached to a running
`up` in the same directory), the database engine or services for the length of one command —
after checking the schema is current —, masked URLs, and the stderr console for progress and
notes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import date
from typing import TYPE_CHECKING

import click
from rich.console import Console

from bot.config import Settings
from bot.masking import mask_url

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from bot.services import Services

console = Console(stderr=True)
PIPED_WIDTH = 160  # a file or a pipe has no width to fit: tables stay whole there


def table_console() -> Console:
    """Where tables go: stdout, as wide as the terminal, or PIPED_WIDTH columns when piped."""
    out = Console()
    return out if out.is_terminal else Console(width=PIPED_WIDTH)


def settings_of(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


# What the sandbox switch replaces: one of them set (environment or .env) names a Feishu app of
# the user's own, and explicit settings win over the running stack's.
_FEISHU_APP = ("feishu_app_id", "feishu_app_secret", "feishu_encrypt_key", "feishu_verification_token",
               "feishu_base_url")


def attach_running_stack(settings: Settings) -> Settings:
    """While `feishu-bridge up` runs with this var dir (var/stack.json, its pid alive), use its
    sandbox and embedded Redis, so a second terminal needs nothing set. What the environment (or
    .env) sets explicitly wins: a FEISHU_* app setting keeps the sandbox switch off, REDIS_URL
    its Redis."""
    from bot.processes import stackfile

    stack = stackfile.read(settings.var_dir)
    if stack is None:
        return settings
    joins_sandbox = bool(stack.sandbox_port) and not any(_set_explicitly(settings, n) for n in _FEISHU_APP)
    if stack.sandbox_port and not joins_sandbox:
        return settings  # your own app: neither the sandbox's data nor its Redis (its workers)
    if joins_sandbox:
        from bot.processes.up import sandbox_settings

        settings = sandbox_settings(settings, stack.sandbox_port)
    if stack.redis_url and not settings.redis_url:
        settings = settings.model_copy(update={"redis_url": stack.redis_url})
    return settings


def _set_explicitly(settings: Settings, name: str) -> bool:
    from pydantic import SecretStr

    value = getattr(settings, name)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return name in settings.model_fields_set and bool(value)


@contextlib.contextmanager
def open_engine(ctx: click.Context) -> Iterator[Engine]:
    """The database for one command, once its schema is known to be current: otherwise
    `bot.migrate.DatabaseNotReady`, one line naming `feishu-bridge db upgrade` (read commands
    never create a schema, nor an empty SQLite file). Disposed afterwards."""
    from bot.db import make_engine
    from bot.migrate import refuse_missing_sqlite_file, require_current

    url = settings_of(ctx).effective_database_url
    refuse_missing_sqlite_file(url)
    engine = make_engine(url)
    try:
        require_current(engine, mask_url(url))
        yield engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def open_services(ctx: click.Context) -> Iterator[Services]:
    """Services for one command (the embedded Redis started if needed), closed afterwards; the
    schema is checked first, as in `open_engine`."""
    from bot.processes.runtime import prepare
    from bot.services import build_services

    with open_engine(ctx):  # checked first: a database that is not ready starts no Redis
        pass
    runtime = prepare(settings_of(ctx), metrics=False)
    services = build_services(runtime.settings)
    try:
        yield services
    finally:
        services.close()
        runtime.shutdown()


def parse_day(value: str | None, option: str) -> date | None:
    """A --date/--from/--to value; a bad one is click's one-line usage error naming the option."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option) from None
