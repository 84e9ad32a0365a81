"""Settings, `config check` and the CLI's help (the `db` group: test_db_cli.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from bot.cli.main import main
from bot.config import Settings
from tests import processes

ROOT = Path(__file__).resolve().parent.parent

SECRET = "app-secret-value-9f8e7d6c"
ENCRYPT = "encrypt-key-value-1a2b3c4d"


def test_settings_read_env_and_dotenv(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text(f"FEISHU_APP_ID=cli_from_dotenv\nFEISHU_APP_SECRET={SECRET}\n"
                        "EVENT_RETRY_INTERVALS=5,10\nFEISHU_BASE_URL=https://open.example.test/\n")
    monkeypatch.setenv("PORT", "9123")
    settings = Settings(_env_file=str(env_file))
    assert settings.feishu_app_id == "cli_from_dotenv"
    assert settings.feishu_app_secret.get_secret_value() == SECRET
    assert settings.port == 9123
    assert settings.event_retry_intervals == [5, 10]
    assert settings.feishu_base_url == "https://open.example.test"  # no trailing slash for the SDK
    assert SECRET not in repr(settings)


def test_default_database_is_sqlite_under_var(tmp_path):
    settings = Settings(_env_file=None, var_dir=tmp_path / "v")
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'v' / 'feishu-bridge.db'}"
    assert settings.uses_embedded_redis
    heroku = Settings(_env_file=None, database_url="postgres://u:p@h:5432/d")
    assert heroku.effective_database_url == "postgresql+psycopg://u:p@h:5432/d"


def _env(**extra):
    base = {"FEISHU_APP_ID": "", "FEISHU_APP_SECRET": "", "FEISHU_ENCRYPT_KEY": "",
            "FEISHU_VERIFICATION_TOKEN": "", "ADMIN_TOKEN": "", "DATABASE_URL": "", "REDIS_URL": ""}
    base.update(extra)
    return base


def test_config_check_masks_secrets_and_names_what_is_missing(tmp_path):
    runner = CliRunner()
    env = _env(FEISHU_APP_ID="cli_abc", FEISHU_APP_SECRET=SECRET, FEISHU_ENCRYPT_KEY=ENCRYPT,
               DATABASE_URL="postgresql://bridge:db-password-123@db.local/bridge")
    result = runner.invoke(main, ["--env-file", str(tmp_path / "none.env"), "config", "check"], env=env)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output and ENCRYPT not in result.output
    assert "db-password-123" not in result.output
    assert "****7d6c" in result.output
    assert "FEISHU_VERIFICATION_TOKEN" in result.output.split("Missing")[1]
    assert "ADMIN_TOKEN" in result.output.split("Missing")[1]

    as_json = runner.invoke(main, ["--env-file", str(tmp_path / "none.env"), "config", "check", "--json"],
                            env=env)
    doc = json.loads(as_json.output)
    assert doc["settings"]["FEISHU_APP_SECRET"] == "****7d6c"
    assert doc["missing_for_real_feishu"] == ["FEISHU_VERIFICATION_TOKEN", "ADMIN_TOKEN",
                                              "TOKEN_ENCRYPTION_KEY", "ADMIN_CHAT_ID"]
    assert SECRET not in as_json.output


def test_every_command_explains_itself():
    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0
    for command in ("up", "worker", "cron", "web", "listen", "sandbox", "config", "db", "events"):
        assert command in top.output
        result = runner.invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, command


def test_worker_rejects_unknown_queue():
    result = CliRunner().invoke(main, ["worker", "-q", "nope"])
    assert result.exit_code == 2
    assert "unknown queue" in result.output


# -- item 7: completion messages reach the bridge only by polling ------------------------------


def _database_with_run(tmp_path, *, status: str = "running") -> str:
    """A current-schema SQLite database holding one export run in `status`."""
    from datetime import datetime

    from bot.db import init_schema, make_engine
    from bot.export import runner
    from bot.export.options import RunOptions

    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    engine = make_engine(url)
    init_schema(engine)
    run_id = runner.create_run(engine, datetime(2024, 1, 1), datetime(2024, 1, 8), RunOptions())
    if status == "paused":
        runner.pause(engine, run_id, "auth")
    elif status == "cancelled":
        runner.cancel(engine, run_id)
    engine.dispose()
    return url


def _check(tmp_path, *extra: str, **env: str):
    env.setdefault("FEISHU_VERIFICATION_TOKEN", "verification-token-for-tests")  # else an error
    return CliRunner().invoke(main, ["--env-file", str(tmp_path / "none.env"), "config", "check", *extra],
                              env=_env(VAR_DIR=str(tmp_path / "var"), **env))


def test_polling_is_the_catching_path_and_on_by_default():
    from bot.processes.cron import SCHEDULE
    from bot.queue import Jobs

    settings = Settings(_env_file=None)
    assert settings.export_poll_seconds == 30
    [poll] = [p for p in SCHEDULE if p.job == Jobs.POLL_EXPORT_MESSAGES]
    assert poll.every(settings) == 30


def test_config_check_refuses_polling_off_while_an_export_runs(tmp_path):
    url = _database_with_run(tmp_path)
    for extra in ((), ("--json",)):
        result = _check(tmp_path, *extra, DATABASE_URL=url, EXPORT_POLL_SECONDS="0")
        assert result.exit_code == 1, result.output
        [line] = result.output.strip().splitlines()  # the CLI rule: one line, what is wrong and what to do
        assert "EXPORT_POLL_SECONDS" in line and "export run 1" in line, line
        assert "set EXPORT_POLL_SECONDS" in line and "export cancel" in line, line
    assert _check(tmp_path, DATABASE_URL=url, EXPORT_POLL_SECONDS="30").exit_code == 0


def test_config_check_allows_polling_off_when_no_export_runs(tmp_path):
    # no database at all: nothing can be running, and the check must not crash on it
    absent = _check(tmp_path, EXPORT_POLL_SECONDS="0")
    assert absent.exit_code == 0, absent.output
    assert not (tmp_path / "var" / "feishu-bridge.db").exists()  # a check creates no database
    for status in ("paused", "cancelled"):
        folder = tmp_path / status
        folder.mkdir()
        url = _database_with_run(folder, status=status)
        result = _check(folder, DATABASE_URL=url, EXPORT_POLL_SECONDS="0")
        assert result.exit_code == 0, (status, result.output)


def test_config_check_explains_the_event_mode_and_listen_refuses_the_wrong_one(tmp_path):
    webhook = _check(tmp_path)
    assert webhook.exit_code == 0, webhook.output
    assert "FEISHU_EVENT_MODE=webhook" in webhook.output and "websocket" in webhook.output
    ws = CliRunner().invoke(main, ["--env-file", str(tmp_path / "none.env"), "config", "check", "--json"],
                            env=_env(VAR_DIR=str(tmp_path / "var"), FEISHU_EVENT_MODE="websocket",
                                     FEISHU_APP_ID="cli_abc", FEISHU_APP_SECRET=SECRET))
    doc = json.loads(ws.output)
    assert doc["settings"]["FEISHU_EVENT_MODE"] == "websocket"
    # over the long connection the app secret authenticates; no event secrets are needed
    assert "FEISHU_ENCRYPT_KEY" not in doc["missing_for_real_feishu"] and doc["errors"] == []

def test_listen_in_webhook_mode_refuses_in_one_line_or_idles_for_the_procfile(tmp_path):
    """By hand, `listen` in webhook mode names the setting to change and exits 1. The Procfile's
    line (`--idle-in-webhook-mode`) says the same and idles — a Procfile runner stops everything
    when one process exits — until SIGTERM ends it cleanly."""
    refused = CliRunner().invoke(main, ["--env-file", str(tmp_path / "none.env"), "listen"],
                                 env=_env(VAR_DIR=str(tmp_path / "var")))
    assert refused.exit_code == 1 and "FEISHU_EVENT_MODE=websocket" in refused.output
    assert "Traceback" not in refused.output and len(refused.output.strip().splitlines()) == 1
    assert "listen --idle-in-webhook-mode" in (ROOT / "Procfile").read_text()

    env = {**_env(VAR_DIR=str(tmp_path / "var")), processes.MARK: processes._owner}
    argv = [sys.executable, "-m", "bot.cli", "--env-file", str(tmp_path / "none.env"), "listen",
            "--idle-in-webhook-mode"]
    listener = processes.spawn(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = listener.stderr.readline()
        assert "FEISHU_EVENT_MODE is webhook" in line and "FEISHU_EVENT_MODE=websocket" in line
        assert listener.poll() is None
        listener.send_signal(signal.SIGTERM)
        assert listener.wait(30) == 0
        assert "Traceback" not in listener.stderr.read()
    finally:
        if listener.poll() is None:
            listener.kill()
