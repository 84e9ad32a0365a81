"""var/stack.json: a running `up` is found by commands in another terminal; a dead one is not,
and what the environment sets explicitly always wins (the stack itself: tests/test_up.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from bot.cli.common import attach_running_stack
from bot.cli.main import main
from bot.config import Settings
from bot.processes import stackfile
from tests import processes


@pytest.fixture
def live_up():
    """A process that looks like `feishu-bridge up` (an `up` argument) and lives for the test."""
    process = processes.spawn([sys.executable, "-c", "import time; time.sleep(120)", "up"])
    deadline = time.monotonic() + 30
    while not stackfile.is_stack_process(process.pid):  # until the fork has exec'd
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)
    yield process.pid
    processes.stop([process], grace=0)


def _dead_pid() -> int:
    process = processes.spawn([sys.executable, "-c", "pass"])
    process.wait(60)  # exited and reaped: its pid names no process
    return process.pid


def _write(var_dir, pid, **fields):
    var_dir.mkdir(parents=True, exist_ok=True)
    doc = {"pid": pid, "started_at": "2024-01-01T00:00:00+00:00", "port": 8123, "sandbox_port": None,
           "redis_url": None, **fields}
    stackfile.path(var_dir).write_text(json.dumps(doc))


def test_write_records_this_process_and_remove_only_removes_its_own(tmp_path):
    info = stackfile.write(tmp_path / "var", port=8123, sandbox_port=9123, redis_url="unix:///x/redis.sock")
    doc = json.loads(stackfile.path(tmp_path / "var").read_text())
    assert doc == {"pid": os.getpid(), "started_at": info.started_at, "port": 8123, "sandbox_port": 9123,
                   "redis_url": "unix:///x/redis.sock"}
    stackfile.remove(tmp_path / "var")
    assert not stackfile.path(tmp_path / "var").exists()

    _write(tmp_path / "var", os.getpid() + 1)  # another stack's file stays
    stackfile.remove(tmp_path / "var")
    assert stackfile.path(tmp_path / "var").exists()


def test_read_finds_a_live_stack_and_ignores_stale_files(tmp_path, live_up):
    var = tmp_path / "var"
    assert stackfile.read(var) is None  # no file
    _write(var, live_up, sandbox_port=9123, redis_url="unix:///x/redis.sock")
    assert stackfile.read(var) == stackfile.StackInfo(live_up, "2024-01-01T00:00:00+00:00", 8123, 9123,
                                                      "unix:///x/redis.sock")
    _write(var, _dead_pid(), sandbox_port=9123)
    assert stackfile.read(var) is None  # the stack is gone (crashed, killed)
    _write(var, os.getpid())
    assert stackfile.read(var) is None  # alive, but not an `up` (a recycled pid)
    stackfile.path(var).write_text("{not json")
    assert stackfile.read(var) is None


def test_a_second_up_with_the_same_var_dir_is_refused(tmp_path, live_up):
    _write(tmp_path, live_up)
    with pytest.raises(stackfile.StackRunning, match=f"already running here \\(pid {live_up}"):
        stackfile.write(tmp_path, port=8000, sandbox_port=None, redis_url=None)
    _write(tmp_path, _dead_pid())  # a stale file is simply replaced
    assert stackfile.write(tmp_path, port=8000, sandbox_port=None, redis_url=None).pid == os.getpid()


def _settings(monkeypatch, tmp_path, **env: str) -> Settings:
    for name in os.environ:
        if name.startswith(("FEISHU_", "REDIS_", "DATABASE_", "VAR_DIR")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None, var_dir=tmp_path / "var")


def test_commands_join_the_running_stack_and_explicit_settings_win(tmp_path, monkeypatch, live_up):
    _write(tmp_path / "var", live_up, sandbox_port=9123, redis_url="unix:///x/redis.sock")
    joined = attach_running_stack(_settings(monkeypatch, tmp_path))
    assert joined.feishu_base_url == "http://127.0.0.1:9123"
    assert joined.var_dir == tmp_path / "var" / "sandbox"  # the sandbox's own database
    assert joined.effective_database_url.endswith("/var/sandbox/feishu-bridge.db")
    assert joined.redis_url == "unix:///x/redis.sock"

    own = attach_running_stack(_settings(monkeypatch, tmp_path, FEISHU_BASE_URL="https://open.feishu.cn",
                                         REDIS_URL="redis://127.0.0.1:6390/0"))
    assert own.feishu_base_url == "https://open.feishu.cn" and own.var_dir == tmp_path / "var"
    assert own.redis_url == "redis://127.0.0.1:6390/0"

    real_app = attach_running_stack(_settings(monkeypatch, tmp_path, FEISHU_APP_ID="cli_real_app"))
    assert real_app.feishu_app_id == "cli_real_app" and real_app.var_dir == tmp_path / "var"
    assert real_app.redis_url == ""  # not the sandbox stack's Redis: its workers serve var/sandbox
    blank = attach_running_stack(_settings(monkeypatch, tmp_path, FEISHU_APP_ID=""))  # a blank .env line
    assert blank.feishu_base_url == "http://127.0.0.1:9123"

    _write(tmp_path / "var", _dead_pid(), sandbox_port=9123, redis_url="unix:///x/redis.sock")
    stale = attach_running_stack(_settings(monkeypatch, tmp_path))
    assert stale.feishu_base_url == "https://open.feishu.cn" and stale.redis_url == ""


def test_the_cli_applies_it_to_the_settings_of_every_command(tmp_path, monkeypatch, live_up):
    _settings(monkeypatch, tmp_path)  # (for its clean environment)
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "var", live_up, sandbox_port=9123, redis_url="unix:///x/redis.sock")
    result = CliRunner().invoke(main, ["--env-file", str(tmp_path / "none.env"), "config", "check", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)["settings"]
    assert shown["FEISHU_BASE_URL"] == "http://127.0.0.1:9123" and shown["REDIS_URL"] == "unix:///x/redis.sock"
    assert shown["VAR_DIR"] == "var/sandbox"


def test_up_removes_its_file_when_it_ends(tmp_path):
    """`up` writes the file once storage is ready and removes it however it ends."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FEISHU_", "DATABASE_", "REDIS_", "PROMETHEUS_", "VAR_DIR", "PORT"))}
    code = (
        "import sys\n"
        "from bot.config import Settings\n"
        "from bot.processes import stackfile, up\n"
        "def stop(runtime, **kw):\n"
        "    info = stackfile.read(runtime.settings.var_dir)\n"  # not switched: no --sandbox
        "    print(info is None, stackfile.path(runtime.settings.var_dir).exists())\n"
        "    raise KeyboardInterrupt\n"
        "up._run = stop\n"
        "try:\n"
        "    up.run_up(Settings(_env_file=None, redis_url='redis://127.0.0.1:1/0'), use_sandbox=False,\n"
        "              port=8123, sandbox_port=9123, n_workers=1, check=False)\n"
        "except KeyboardInterrupt:\n"
        "    print(stackfile.path(Settings(_env_file=None).var_dir).exists())\n"
    )
    done = processes.run([sys.executable, "-c", code, "up"], cwd=tmp_path, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert done.returncode == 0, done.stderr
    # while running: the file is there and names a live `up` (this process); afterwards: gone
    assert done.stdout.split() == ["False", "True", "False"], done.stdout + done.stderr


def test_restore_is_refused_while_up_runs_on_the_database(tmp_path, monkeypatch, live_up):
    _settings(monkeypatch, tmp_path)  # (for its clean environment)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(main, ["db", "backup", "saved.db"]).exit_code == 0
    _write(tmp_path / "var", live_up)
    refused = runner.invoke(main, ["db", "restore", "saved.db", "--yes"])
    assert refused.exit_code != 0
    assert f"`feishu-bridge up` is running on this database (pid {live_up})" in refused.output
