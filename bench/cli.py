"""What the common CLI commands cost to start: CPU seconds and peak RSS per command, beside
`python -c "import sqlalchemy, click"` measured in the same run (issue 13: target ≤ 2× that).

Each command runs as its own process against a fresh SQLite database in a temporary directory
(which is also its working directory, so `var/` and `.env` come from there), with every
setting the bridge reads removed from the environment except DATABASE_URL — what a user gets
typing the command in an empty directory. The database holds one cache source, one event
receipt and one export run, so every command has something to show. Rounds interleave the
commands (one warm-up round first, not counted: it writes the bytecode caches) and the table
shows per-command medians. CPU is user + system time of the child (and the children it waited
for) from os.wait4; an embedded Redis the command starts is a daemon, so its CPU is not counted
(its cost shows in wall time).

    python bench/cli.py [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET = 2.0  # × the baseline's CPU seconds
BASELINE = "import sqlalchemy, click"
COMMANDS = [
    "--help",
    "sources list",
    "cache summary",
    "events",
    "coze list",
    "export status",
    "auth status",
]


@dataclass
class Sample:
    cpu: float  # user + sys seconds
    wall: float
    rss_mib: float
    rc: int


@dataclass
class Row:
    command: str
    cpu_s: float
    ratio: float
    wall_s: float
    max_rss_mib: float
    ok: bool  # every run exited 0
    passed: bool  # ok and ratio ≤ TARGET


def prepare(database_url: str) -> None:
    """Run in a child process (the bench itself stays small: a child's peak RSS starts at its
    parent's): seed the database and print the names of the settings the bridge reads."""
    from bot.config import Settings

    seed_database(database_url)
    print(json.dumps(sorted(Settings.model_fields)))


def seed_database(database_url: str) -> None:
    """The schema and one row for each command to list: a cache source, an event receipt and an
    export run (tests/test_cli_imports.py seeds its database the same way)."""
    from sqlalchemy.orm import Session

    from bot.caches import store
    from bot.caches.sources import parse_source
    from bot.config import Settings
    from bot.db import init_schema, make_engine
    from bot.export import runner
    from bot.export.options import RunOptions
    from bot.models import EventReceipt, utcnow

    engine = make_engine(database_url)
    init_schema(engine)
    url = "https://example.feishu.cn/base/bascnBenchBenchBenchBench?table=tblBench"
    store.add_source(engine, "bench", url, parse_source(url), 3600, None)
    with Session(engine) as session, session.begin():
        session.add(EventReceipt(event_id="ev-bench", event_type="im.message.receive_v1",
                                 status="done", payload="{}", received_at=utcnow()))
    runner.create_run(engine, datetime(2024, 1, 1), datetime(2024, 2, 1),
                      RunOptions.from_settings(Settings(_env_file=None)))
    engine.dispose()


def clean_env(database_url: str, setting_names: list[str]) -> dict[str, str]:
    """This environment without any of the bridge's settings, plus DATABASE_URL."""
    names = {name.lower() for name in setting_names}
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in names and not k.startswith(("FB_", "PROMETHEUS_"))}
    env["DATABASE_URL"] = database_url
    # A user's Python writes bytecode caches; a CI image often says not to (this machine sets
    # PYTHONDONTWRITEBYTECODE=1), which would make every run compile the edited modules again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def command_line(command: str) -> list[str]:
    if command == BASELINE:
        return [sys.executable, "-c", BASELINE]
    script = Path(sys.executable).with_name("feishu-bridge")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]
    return head + command.split()


def run_once(argv: list[str], cwd: Path, env: dict[str, str]) -> Sample:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return Sample(usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024, proc.returncode)


def measure(rounds: int) -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="fb-bench-cli-"))
    try:
        database_url = f"sqlite:///{workdir / 'bridge.sqlite'}"
        prepared = subprocess.run([sys.executable, __file__, "--prepare", database_url], cwd=workdir,
                                  check=True, capture_output=True, text=True)
        env = clean_env(database_url, json.loads(prepared.stdout.splitlines()[-1]))
        names = [BASELINE, *COMMANDS]
        samples: dict[str, list[Sample]] = {name: [] for name in names}
        for round_no in range(rounds + 1):  # round 0 warms the bytecode caches
            for name in names:
                sample = run_once(command_line(name), workdir, env)
                if round_no:
                    samples[name].append(sample)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    base = statistics.median(s.cpu for s in samples[BASELINE])
    rows = []
    for name in names:
        cpu = statistics.median(s.cpu for s in samples[name])
        ok = all(s.rc == 0 for s in samples[name])
        rows.append(Row(
            command=f'python -c "{BASELINE}"' if name == BASELINE else f"feishu-bridge {name}",
            cpu_s=round(cpu, 3),
            ratio=round(cpu / base, 2),
            wall_s=round(statistics.median(s.wall for s in samples[name]), 3),
            max_rss_mib=round(max(s.rss_mib for s in samples[name]), 1),
            ok=ok,
            passed=ok and (name == BASELINE or cpu / base <= TARGET),
        ))
    return rows


def print_table(rows: list[Row], rounds: int) -> None:
    print(f"median of {rounds} runs each; target: CPU ≤ {TARGET:g}× the baseline (first row)")
    width = max(len(r.command) for r in rows)
    print(f"{'command':<{width}}  {'CPU s':>6}  {'ratio':>6}  {'wall s':>6}  {'RSS MiB':>7}  result")
    for r in rows:
        verdict = ("pass" if r.passed else "FAIL") if r.ok else "FAIL (exit ≠ 0)"
        if r is rows[0]:
            verdict = "baseline"
        print(f"{r.command:<{width}}  {r.cpu_s:>6.2f}  {r.ratio:>5.2f}×  {r.wall_s:>6.2f}  "
              f"{r.max_rss_mib:>7.1f}  {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="Runs per command (median reported).")
    parser.add_argument("--json", action="store_true", help="Print the rows as JSON.")
    parser.add_argument("--prepare", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return 0
    rows = measure(args.rounds)
    if args.json:
        print(json.dumps({"rounds": args.rounds, "target_ratio": TARGET,
                          "rows": [asdict(r) for r in rows]}, indent=2))
    else:
        print_table(rows, args.rounds)
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
