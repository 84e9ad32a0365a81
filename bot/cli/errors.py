"""What a user sees when a command fails: one line on stderr saying what is wrong and what to
run, exit status 1 — never a traceback, unless asked for with `--debug` or LOG_LEVEL=DEBUG.

`BridgeGroup`, the class of the `feishu-bridge` group, catches whatever escapes a command (or
the loading of the settings); `explain` turns it into that line. Click's own errors (usage,
`ClickException`, Abort) pass through and are printed by click as always. Exceptions are
recognised by their classes' dotted names, so nothing here imports SQLAlchemy, Redis, httpx,
lark-oapi or cozepy just to compare. No line carries a secret: URLs are masked, and the
settings' secret values and URL credentials are scrubbed from every message quoted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

if TYPE_CHECKING:
    from bot.config import Settings

DEBUG_HINT = "run with --debug for the traceback"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


class BridgeGroup(click.Group):
    """A click group whose unexpected failures end in one line (see the module's docstring)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:
            settings = (ctx.obj or {}).get("settings")
            if wants_traceback(ctx, settings):
                raise
            click.echo(f"error: {explain(exc, settings)}", err=True)
            ctx.exit(1)


def wants_traceback(ctx: click.Context, settings: Settings | None) -> bool:
    levels = {os.environ.get("LOG_LEVEL", "").upper(), (settings.log_level if settings else "").upper()}
    return bool(ctx.params.get("debug")) or "DEBUG" in levels


def explain(exc: BaseException, settings: Settings | None) -> str:
    """One line (no newline) for the user: what is wrong, and what to run about it."""
    names = [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__]
    line = None
    for name in names:
        handler = _HANDLERS.get(name)
        if handler is not None:
            line = handler(exc, settings)
            if line:
                break
    if not line:
        line = _generic(exc)
    return _one_line(_scrub(line, settings))


# -- the expected failures ------------------------------------------------------------------


def _own_message(exc: BaseException, settings: Settings | None) -> str:
    """Our own errors: their message is already the line for the user."""
    return _first_line(str(exc)) or _generic(exc)


def _database(exc, settings: Settings | None) -> str:
    from bot.migrate import UPGRADE_HINT

    where = _database_where(settings)
    message = str(getattr(exc, "orig", None) or exc)
    low = message.lower()
    if match := re.search(r'no such table: (\S+)|relation "([^"]+)" does not exist', message):
        return f"the database at {where} has no table {match.group(1) or match.group(2)}: {UPGRADE_HINT}"
    if re.search(r'no such column|has no column named|column "[^"]+" (of relation "[^"]+" )?does not exist',
                 low):
        return f"the database at {where} is older than this build ({_first_line(message)}): {UPGRADE_HINT}"
    if "database is locked" in low:
        return f"the database at {where} is locked by another process: try again in a moment"
    connecting = ("unable to open database file", "could not connect", "connection refused",
                  "connection failed", "could not translate host name", "name or service not known",
                  "password authentication", "timeout expired", "server closed the connection",
                  "no route to host", "connection is bad")
    missing = re.search(r'(database|role) "[^"]+" does not exist', low)  # PostgreSQL, at connect
    if missing or any(phrase in low for phrase in connecting):
        fallback = f"; unset it to use the embedded SQLite under {settings.var_dir}" if settings else ""
        return (f"cannot connect to the database at {where} ({_first_line(message)}): "
                f"check DATABASE_URL{fallback}")
    return f"database error at {where}: {_first_line(message)} ({DEBUG_HINT})"


def _database_url_argument(exc, settings: Settings | None) -> str | None:
    text = str(exc)
    if "URL" not in text and "plugin" not in text:
        return None  # some other misuse of SQLAlchemy: the generic line
    return ("DATABASE_URL is not a database URL this build can use: write it as "
            "postgresql://USER:PASSWORD@HOST/DB or sqlite:///PATH, or unset it for the embedded SQLite")


def _redis(exc, settings: Settings | None) -> str:
    from bot.masking import mask_url

    reason = _reason(exc)
    if settings is not None and settings.redis_url:
        return (f"cannot connect to Redis at {mask_url(settings.redis_url)} ({reason}): start Redis there, "
                "or unset REDIS_URL to use the embedded one")
    where = f"{settings.var_dir / 'redis'}" if settings else "var/redis"
    return f"the embedded Redis under {where} did not answer ({reason}): see {where}/redis.log"


def _unreachable(exc, settings: Settings | None) -> str:
    target = _request_origin(exc)
    base = settings.feishu_base_url if settings else ""
    reason = _reason(exc)
    if base and (target is None or target == _origin(base)):
        if urlsplit(base).hostname in LOCAL_HOSTS:
            return f"the Feishu sandbox is not running at {base} ({reason}): run `feishu-bridge up --sandbox`"
        return f"cannot reach Feishu at {base} ({reason}): check the network, or FEISHU_BASE_URL"
    return f"cannot reach {target or 'the server'} ({reason}): check the network and the URL set for it"


def _feishu(exc, settings: Settings | None) -> str:
    code, msg = getattr(exc, "code", None), getattr(exc, "msg", None) or ""
    line = f"Feishu refused {getattr(exc, 'operation', 'the call')}: code {code}, {msg}"
    if getattr(exc, "log_id", None):
        line += f" (log_id {exc.log_id})"
    low = msg.lower()
    if code in (10003, 10014) or "app secret" in low or "app_id" in low or "app id" in low:
        line += ": check FEISHU_APP_ID and FEISHU_APP_SECRET (`feishu-bridge config check`)"
    elif code in (99991672, 99991679) or "scope" in low or "permission" in low:
        line += ": grant the app that permission in the Feishu developer console"
    return line


def _feishu_unreachable(exc, settings: Settings | None) -> str:
    """No answer at all (after the gateway's retries): say where Feishu could not be reached."""
    cause = exc.__cause__
    if getattr(exc, "kind", "") == "network error" and cause is not None:
        return _unreachable(cause, settings)
    return _own_message(exc, settings)


def _coze(exc, settings: Settings | None) -> str:
    line = f"Coze refused the call: code {getattr(exc, 'code', None)}, {getattr(exc, 'msg', None) or exc}"
    if getattr(exc, "logid", None):
        line += f" (logid {exc.logid})"
    return line


def _validation(exc, settings: Settings | None) -> str:
    errors = exc.errors(include_input=False, include_url=False)
    if getattr(exc, "title", "") == "Settings":
        parts = [f"{'.'.join(map(str, e['loc'])).upper() or '?'}: {e['msg']}" for e in errors]
        return f"invalid setting {'; '.join(parts)} (from the environment or ./.env)"
    parts = [f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in errors]
    return f"invalid {getattr(exc, 'title', 'input')}: {'; '.join(parts)}"


def _browser(exc, settings: Settings | None) -> str:
    return (f"the browser failed: {_first_line(str(exc))}: check the network and EXPORT_MESSENGER_URL "
            "(PLAYWRIGHT_CHROMIUM_PATH names the browser)")


def _spec(exc, settings: Settings | None) -> str:
    return "; ".join(p.message for p in getattr(exc, "problems", [])) or _own_message(exc, settings)


_HANDLERS: dict[str, Callable[[BaseException, Settings | None], str | None]] = {
    "bot.migrate.DatabaseNotReady": _own_message,
    "sqlalchemy.exc.OperationalError": _database,
    "sqlalchemy.exc.ProgrammingError": _database,
    "sqlalchemy.exc.InterfaceError": _database,
    "sqlalchemy.exc.ArgumentError": _database_url_argument,
    "redis.exceptions.ConnectionError": _redis,
    "redis.exceptions.TimeoutError": _redis,
    "httpx.TransportError": _unreachable,
    "requests.exceptions.ConnectionError": _unreachable,
    "requests.exceptions.Timeout": _unreachable,
    "bot.feishu.FeishuUnreachable": _feishu_unreachable,
    "bot.feishu.FeishuAPIError": _feishu,
    "cozepy.exception.CozeAPIError": _coze,
    "pydantic_core._pydantic_core.ValidationError": _validation,
    "bot.coze.spec.SpecError": _spec,
    "playwright._impl._errors.Error": _browser,
    # ours, whose messages are written for the user already
    "bot.tokens.store.TokenError": _own_message,
    "bot.tokens.login.LoginError": _own_message,
    "bot.tokens.oauth.OAuthError": _own_message,
    "bot.tokens.secretbox.SecretBoxError": _own_message,
    "bot.caches.sources.SourceError": _own_message,
    "bot.caches.query.QueryError": _own_message,
    "bot.coze.templates.TemplateNotFound": _own_message,
    "bot.export.auth.NoExportAuth": _own_message,
    "bot.export.runner.RunConflict": _own_message,
    "bot.export.curl.CurlError": _own_message,
    "bot.export.messenger.BrowserLoginRequired": _own_message,
    "bot.export.download.DownloadFailed": _own_message,
    "bot.export.sizing.CountUnavailable": _own_message,
    "bot.intake.recorder.StorageUnavailable": _own_message,
    "bot.processes.stackfile.StackRunning": _own_message,
    "bot.backup.BackupError": _own_message,
}


# -- helpers ------------------------------------------------------------------------------


def _generic(exc: BaseException) -> str:
    message = _first_line(str(exc))
    return f"{type(exc).__name__}{': ' + message if message else ''} ({DEBUG_HINT})"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _reason(exc: BaseException) -> str:
    """Why a connection failed, briefly (requests' messages run to a paragraph)."""
    text = str(exc)
    for phrase in ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                   "No route to host", "timed out", "Connection reset", "Authentication required",
                   "invalid password", "No such file or directory", "Permission denied"):
        if phrase.lower() in text.lower():
            return phrase.lower()
    return _first_line(text)[:160] or type(exc).__name__


def _origin(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    return f"{parts.scheme}://{parts.hostname}:{port}"


def _request_origin(exc: BaseException) -> str | None:
    """scheme://host:port of the request that failed (never its path or query), if known."""
    try:
        request = exc.request  # httpx raises RuntimeError when the error has no request
    except (RuntimeError, AttributeError):
        return None
    url = getattr(request, "url", None)
    return _origin(str(url)) if url else None


def _database_where(settings: Settings | None) -> str:
    from bot.masking import mask_url

    return mask_url(settings.effective_database_url) if settings else "DATABASE_URL"


def _scrub(text: str, settings: Settings | None) -> str:
    """Mask every secret the settings hold (values, URL passwords) and URL credentials."""
    from bot.masking import mask, scrub

    secrets = set(settings.secret_values()) if settings is not None else set()
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, mask(secret))
    return scrub(text)
