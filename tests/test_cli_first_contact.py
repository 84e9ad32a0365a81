"""First contact: every command, run in an empty directory with nothing configured, ends in one
line saying what is wrong and what to run — never a traceback (issue 13). `--debug` and
LOG_LEVEL=DEBUG bring the traceback back. The one-line explanations themselves are unit-tested
below from constructed exceptions (no process needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click

from bot.cli.errors import explain
from bot.cli.main import main
from bot.config import Settings
from tests import processes
from tests.servers import free_port

# Long-running commands are only asked for their help.
HELP_ONLY = {
    "up": "runs the whole stack until Ctrl-C (tests/test_up.py runs it)",
    "sandbox": "serves the emulator until stopped",
}
# Commands that print a note on stderr before they fail; their last line is the one error line.
NOTE_FIRST = {
    "export login": "says which messenger page it opens before the browser fails to load it",
}
# Failing commands whose line is about something else than the database: they fail before
# touching it (bad dummy input, a confirmation prompt on an empty stdin) or need none.
NOT_ABOUT_THE_DATABASE = {
    "sources add": "the dummy URL_OR_TOKEN is refused before the database is opened",
    "coze delete": "asks for confirmation first: an empty stdin answers no (Aborted!)",
    "db downgrade": "asks for confirmation first (Aborted!)",
    "db restore": "asks for confirmation first (Aborted!)",
    "db backup": "there is no database to back up",
    "export login": "needs no database: the browser fails",
    "config check": "no event secret is set: an error (web and up refuse to start), no database needed",
    "web": "refuses to start without an event secret before it opens the database",
    "listen": "FEISHU_EVENT_MODE is webhook: it names the setting before it opens the database",
}
# Only these create the database (that is what they are for); every other command leaves an
# empty directory without a database file.
OPENS_THE_DATABASE = {"db upgrade", "db init"}
TIMEOUT = 90  # seconds per command; they take a few (two CPUs, three at a time)


def _clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FEISHU_", "DATABASE_", "REDIS_", "PROMETHEUS_", "VAR_DIR", "PORT", "LOG_"))}
    env.update(HOME=str(tmp), **extra)
    return env


def _leaves(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _leaves(command, (*path, name))
        else:
            yield (*path, name), command


def _dummy(param: click.Parameter) -> str:
    kind = param.type
    if isinstance(kind, click.Choice):
        return str(kind.choices[0])
    if isinstance(kind, click.types.IntParamType | click.types.FloatParamType):
        return "1"
    if isinstance(kind, click.DateTime):
        return "2024-01-01"
    if isinstance(kind, click.types.BoolParamType):
        return "true"
    if isinstance(kind, click.Path | click.File):
        return "no-such-file.txt"
    if isinstance(kind, click.types.UUIDParameterType):
        return "00000000-0000-0000-0000-000000000000"
    name = param.name or ""
    if "date" in name or name in ("start", "end", "since", "until"):
        return "2024-01-01"
    if "url" in name:
        return "https://example.invalid/x"
    return "x"


def minimal_argv(path: tuple[str, ...], command: click.Command) -> list[str]:
    """The command with its required arguments and options, filled with plausible dummies."""
    if " ".join(path) in HELP_ONLY:
        return [*path, "--help"]
    argv = list(path)
    for param in command.params:
        if not param.required:
            continue
        if isinstance(param, click.Argument):
            argv.append(_dummy(param))
        elif isinstance(param, click.Option) and not param.is_flag:
            argv += [param.opts[0], _dummy(param)]
    if path == ("export", "login"):  # no network: a local port nobody listens on, and no window
        argv += ["--headless", "--timeout", "1"]
    return argv


@dataclass
class Outcome:
    argv: list[str]
    code: int | None
    stdout: str
    stderr: str
    leftover_database: bool
    written: list[str]  # files the command left in its (empty) directory

    @property
    def name(self) -> str:
        return " ".join(a for a in self.argv if not a.startswith("-"))


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> Outcome:
    try:
        done = processes.run([sys.executable, "-m", "bot.cli", *argv], cwd=cwd, env=env, text=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             timeout=TIMEOUT)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = None, str(exc.stdout or ""), str(exc.stderr or "")
    written = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*") if p.is_file())
    return Outcome(argv, code, out, err, (cwd / "var" / "feishu-bridge.db").exists(), written)


def _problems(outcome: Outcome, command_name: str) -> list[str]:
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    found = []
    if outcome.code is None:
        found.append(f"still running after {TIMEOUT} s")
    if "Traceback" in outcome.stdout + outcome.stderr:
        found.append("printed a traceback")
    usage_error = outcome.code == 2 and "Usage:" in outcome.stderr
    if outcome.code and not usage_error:
        if command_name in NOTE_FIRST:
            errors = [line for line in lines if line.startswith("error:")]
            if not lines or not lines[-1].startswith("error:") or len(errors) != 1:
                found.append(f"wanted the error as its last stderr line, got {lines!r}")
        elif len(lines) != 1:
            found.append(f"wanted one line on stderr, got {len(lines)}: {lines!r}")
        if command_name not in NOT_ABOUT_THE_DATABASE and "feishu-bridge db upgrade" not in outcome.stderr:
            found.append(f"the line does not name `feishu-bridge db upgrade`: {lines!r}")
    return found


def test_every_command_fails_in_one_line_in_an_empty_directory(tmp_path):
    cases = []
    for path, command in _leaves(main):
        cwd = tmp_path / "-".join(path)
        cwd.mkdir()
        env = _clean_env(cwd, EXPORT_MESSENGER_URL=f"http://127.0.0.1:{free_port()}/messenger")
        cases.append((" ".join(path), minimal_argv(path, command), cwd, env))
    assert len(cases) > 30

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(lambda case: _run(*case[1:]), cases))

    report = []
    for (name, _argv, _cwd, _env), outcome in zip(cases, outcomes, strict=True):
        problems = _problems(outcome, name)
        if outcome.leftover_database and name not in OPENS_THE_DATABASE:
            problems.append("left a database file behind")
        if "has no schema yet" in outcome.stderr and outcome.written:
            problems.append(f"refused, yet wrote {outcome.written}")
        if problems:
            report.append(f"`{' '.join(outcome.argv)}` (exit {outcome.code}): {'; '.join(problems)}\n"
                          f"    stderr: {outcome.stderr[-1500:]!r}")
    assert not report, "\n".join(report)
    ran = {name: outcome for (name, *_), outcome in zip(cases, outcomes, strict=True)}
    assert ran["config check"].code == 1 and "FEISHU_ENCRYPT_KEY" in ran["config check"].stderr
    assert ran["web"].code == 1 and "FEISHU_VERIFICATION_TOKEN" in ran["web"].stderr
    assert ran["db upgrade"].code == 0
    assert ran["sources list"].stderr.startswith("error: the database at sqlite:")


def test_debug_shows_the_traceback(tmp_path):
    plain = _run(["events"], tmp_path, _clean_env(tmp_path))
    assert plain.code == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.count("\n") == 1 and "feishu-bridge db upgrade" in plain.stderr

    debug = _run(["--debug", "events"], tmp_path, _clean_env(tmp_path))
    assert debug.code == 1
    assert "Traceback (most recent call last)" in debug.stderr and "DatabaseNotReady" in debug.stderr

    by_level = _run(["events"], tmp_path, _clean_env(tmp_path, LOG_LEVEL="debug"))
    assert by_level.code == 1 and "Traceback (most recent call last)" in by_level.stderr


def test_an_invalid_setting_is_named_not_quoted(tmp_path):
    env = _clean_env(tmp_path, PORT="eighty", FEISHU_APP_SECRET="s3cret-value-x")
    outcome = _run(["events"], tmp_path, env)
    assert outcome.code == 1 and "Traceback" not in outcome.stderr
    assert outcome.stderr.startswith("error: invalid setting PORT:") and outcome.stderr.count("\n") == 1
    assert "eighty" not in outcome.stderr


# -- the lines themselves ---------------------------------------------------------------------


def test_every_mapped_exception_names_a_real_class():
    """The mapping compares dotted class names (so it imports nothing): a class that moves or is
    renamed must fail here, not silently fall back to the generic line."""
    import importlib

    from bot.cli.errors import _HANDLERS

    for dotted in _HANDLERS:
        module, _, name = dotted.rpartition(".")
        found = getattr(importlib.import_module(module), name, None)
        assert isinstance(found, type) and issubclass(found, BaseException), dotted
        assert f"{found.__module__}.{found.__qualname__}" == dotted


def _settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


def test_database_lines():
    from sqlalchemy.exc import ArgumentError, OperationalError

    from bot.migrate import DatabaseNotReady

    settings = _settings(database_url="postgresql://bridge:pg-pass-778899@db.local/bridge")
    assert explain(DatabaseNotReady("the database at x has no schema yet: run `feishu-bridge db upgrade`"),
                   settings) == "the database at x has no schema yet: run `feishu-bridge db upgrade`"
    missing = OperationalError("SELECT …", {}, Exception("no such table: cache_sources"))
    line = explain(missing, settings)
    assert "has no table cache_sources" in line and "feishu-bridge db upgrade" in line
    assert "pg-pass-778899" not in line and "bridge:***@db.local" in line
    refused = OperationalError("connect", {}, Exception(
        'connection failed: connection to server at "10.0.0.1", port 5432 failed: Connection refused\n'
        "\tIs the server running on that host?"))
    line = explain(refused, settings)
    assert line.startswith("cannot connect to the database at postgresql+psycopg://bridge:***@db.local/bridge")
    assert "check DATABASE_URL" in line and "\n" not in line
    bad_url = ArgumentError("Could not parse SQLAlchemy URL from string 'nonsense://pg-pass-778899'")
    line = explain(bad_url, settings)
    assert line.startswith("DATABASE_URL is not a database URL") and "pg-pass-778899" not in line


def test_redis_lines(tmp_path):
    from redis.exceptions import ConnectionError as RedisConnectionError

    down = RedisConnectionError("Error 111 connecting to localhost:6399. Connection refused.")
    line = explain(down, _settings(redis_url="redis://:redis-pass-4455@localhost:6399/0"))
    assert "cannot connect to Redis at redis://:***@localhost:6399/0 (connection refused)" in line
    assert "unset REDIS_URL" in line and "redis-pass-4455" not in line
    embedded = explain(down, _settings(var_dir=tmp_path))
    assert f"the embedded Redis under {tmp_path / 'redis'} did not answer" in embedded


def test_unreachable_feishu_lines():
    import httpx
    import requests

    request = httpx.Request("GET", "http://127.0.0.1:9000/open-apis/im/v1/chats?page_token=abcdefgh")
    refused = httpx.ConnectError("[Errno 111] Connection refused", request=request)
    sandbox = _settings(feishu_base_url="http://127.0.0.1:9000")
    assert explain(refused, sandbox) == ("the Feishu sandbox is not running at http://127.0.0.1:9000 "
                                         "(connection refused): run `feishu-bridge up --sandbox`")
    by_requests = requests.exceptions.ConnectionError(
        "HTTPConnectionPool(host='127.0.0.1', port=9000): Max retries exceeded with url: /open-apis/x "
        "(Caused by NewConnectionError('…: Failed to establish a new connection: [Errno 111] "
        "Connection refused'))")
    assert "sandbox is not running" in explain(by_requests, sandbox)
    real = explain(refused, _settings())
    assert real.startswith("cannot reach http://127.0.0.1:9000 (connection refused)")
    assert "page_token" not in real


def test_feishu_coze_and_generic_lines():
    from cozepy import CozeAPIError

    from bot.feishu import FeishuAPIError

    line = explain(FeishuAPIError("im.v1.message.create", 10014, "app secret invalid", "20240101abc"),
                   _settings())
    assert line.startswith("Feishu refused im.v1.message.create: code 10014, app secret invalid (log_id 2024")
    assert "FEISHU_APP_SECRET" in line
    coze = explain(CozeAPIError(4100, "authentication is invalid", "log-1"), _settings())
    assert coze.startswith("Coze refused the call: code 4100, authentication is invalid")

    secret = "app-secret-value-5566778899"
    generic = explain(KeyError(f"boom with {secret}\nsecond line"), _settings(feishu_app_secret=secret))
    assert generic.startswith("KeyError: ")
    assert secret not in generic and "****8899" in generic
    assert generic.endswith("(run with --debug for the traceback)") and "\n" not in generic
