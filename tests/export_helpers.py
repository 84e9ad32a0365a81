"""Driving a contract export through the real stack, for the export tests and the bench."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
from openpyxl import load_workbook
from sqlalchemy import select

from bot.models import CooperationRecord
from sandbox.contract import CONTRACT_CHAT_ID
from sandbox.seed_contract import COLUMNS, ID_COLUMN
from sandbox.state import DEFAULT_USER_OPEN_ID
from tests import processes

ROOT = Path(__file__).resolve().parent.parent


def export_env(sandbox_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "EXPORT_CHAT_ID": CONTRACT_CHAT_ID,
        "EXPORT_USER": DEFAULT_USER_OPEN_ID,
        "EXPORT_FINER_BOUNDS": "true",
        "EXPORT_CONCURRENCY": "4",
        "EXPORT_QPS": "50",
        "EXPORT_FILE_TIMEOUT_SECONDS": "12",
        "EXPORT_SUBMIT_LEASE_SECONDS": "10",
        "EXPORT_BACKOFF_SECONDS": "0.2",
        "EXPORT_BACKOFF_MAX_SECONDS": "2",
        "EXPORT_MESSENGER_URL": f"{sandbox_url}/next/messenger",
        "EXPORT_POLL_SECONDS": "1",  # the only way completion messages arrive
        "EXPORT_TICK_SECONDS": "2",
    }
    env.update(overrides)
    return env


def cli(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess:
    done = processes.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        input=stdin,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=timeout,
        cwd=ROOT,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"feishu-bridge {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


def store_auth(env: dict[str, str], sandbox_url: str) -> None:
    curl = httpx.get(f"{sandbox_url}/sandbox/contract/curl").text
    cli(env, "export", "auth", "--from-curl", "-", stdin=curl)


def truth(state) -> dict[str, tuple]:
    return state.contract.truth()


def table_rows(services) -> dict[str, tuple]:
    with services.sessions() as session:
        rows = session.execute(select(CooperationRecord.record_id, CooperationRecord.data)).all()
    return {rid: tuple(json.loads(data)[c] for c in COLUMNS) for rid, data in rows}


def workbook_rows(path: Path) -> tuple[list[str], dict[str, tuple], int]:
    """The merged workbook read back with openpyxl: (header, rows by id, row count)."""
    book = load_workbook(path, read_only=True)
    sheet = book["协同记录"]
    rows = sheet.iter_rows(values_only=True)
    header = list(next(rows))
    by_id, count = {}, 0
    at = header.index(ID_COLUMN)
    for row in rows:
        count += 1
        by_id[row[at]] = tuple(row[header.index(c)] for c in COLUMNS)
    book.close()
    return header, by_id, count


def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def running_stack(tmp_path, redis_url, sandbox, **env):
    """The whole bridge (gunicorn, 3 workers, cron) on SQLite against the sandbox, with the
    export settings tests use plus `env`; yields (stack, services, sandbox state, sandbox URL)."""
    from redis import Redis

    from bot.db import init_schema
    from bot.services import build_services
    from tests.conftest import make_settings
    from tests.oauth_helpers import authorize
    from tests.stack import BridgeStack

    base_url, state = sandbox
    database_url = f"sqlite:///{tmp_path / 'bridge.db'}"
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        feishu_base_url=base_url,
        var_dir=tmp_path / "var",
    )
    services = build_services(settings)
    init_schema(services.engine)
    authorize(services)
    Redis.from_url(redis_url).flushdb()  # no delayed jobs left over from an earlier test's run
    extra = export_env(base_url, SWEEP_INTERVAL_SECONDS="2", **env)
    stack = BridgeStack(tmp_path, database_url, redis_url, base_url, workers=3, cron=True, extra_env=extra)
    stack.start()
    state.sender.config.webhook_url = f"{stack.base_url}/webhook/event"
    try:
        yield stack, services, state, base_url
    finally:
        stack.stop()
        services.close()
