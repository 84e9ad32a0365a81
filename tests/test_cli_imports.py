"""Commands that make no Feishu call do not import the Feishu SDK, nor pandas, openpyxl,
Playwright, cozepy or the web stack (issue 13: `import lark_oapi` alone costs seconds).

Each command runs in a fresh interpreter, against a database that has something to list, with
none of the bridge's settings in the environment but DATABASE_URL and REDIS_URL; afterwards the
interpreter reports which of those packages `sys.modules` holds. Timing is bench/cli.py's job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import seed_database
from bot.config import Settings
from tests.processes import run

HEAVY = ("lark_oapi", "pandas", "openpyxl", "playwright", "cozepy", "flask", "rq_dashboard")
COMMANDS = {  # command → what its output shows when it worked
    "--help": "Usage: feishu-bridge",
    "sources list": "bench",
    "cache summary": "bench",
    "events": "done=1",
    "coze list": "uuid",
    "export status": "run 1:",
    "auth status": "No grant is stored",
}
MARKER = "@@heavy-modules@@ "

# Runs one command in-process, then prints what it imported of HEAVY on a line of its own.
PROBE = f"""
import json, sys
from bot.cli.main import main
args = json.loads(sys.argv[1])
code = 0
try:
    main(args=args, prog_name="feishu-bridge", standalone_mode=False)
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print({MARKER!r} + json.dumps({{"code": code, "heavy": heavy}}), flush=True)
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a database holding a cache source, an event receipt and an export run."""
    directory = tmp_path_factory.mktemp("cli-imports")
    seed_database(f"sqlite:///{directory / 'bridge.sqlite'}")
    return directory


def clean_env(directory: Path, redis_url: str) -> dict[str, str]:
    settings = {name.lower() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in settings and not k.startswith(("FB_", "PROMETHEUS_"))}
    env["DATABASE_URL"] = f"sqlite:///{directory / 'bridge.sqlite'}"
    env["REDIS_URL"] = redis_url
    return env


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_imports_no_heavy_package(command: str, workdir: Path, redis_url: str):
    done = run([sys.executable, "-c", PROBE, json.dumps(command.split())], cwd=workdir,
               env=clean_env(workdir, redis_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
               text=True, timeout=120)
    report = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    assert done.returncode == 0 and report, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    result = json.loads(report[-1].removeprefix(MARKER))
    assert result["code"] in (0, None), f"exit {result['code']}:\n{done.stdout}\n{done.stderr}"
    assert COMMANDS[command] in done.stdout, done.stdout
    assert result["heavy"] == [], f"`feishu-bridge {command}` imported {result['heavy']}"
