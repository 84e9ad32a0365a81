"""A full contract export in the sandbox: export calls against the floor, wall time, and merge
speed against a plain pandas + openpyxl read of the same files.

Starts the sandbox (80,000 records from 2022-01-01 to today), an embedded Redis, the bridge's
gunicorn, RQ workers and cron, then runs `feishu-bridge export run` and `export merge` as a
user would. The floor is ceil(records / cap); the issue asks for at most 1.25 × the floor.

Usage: python bench/export.py [--workers 3] [--dates-only] [--faults]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import pandas as pd  # noqa: E402
from sqlalchemy import select  # noqa: E402

from bot.db import init_schema  # noqa: E402
from bot.export.merge import SourceFile, merge  # noqa: E402
from bot.models import ExportFile  # noqa: E402
from bot.processes.redis_server import EmbeddedRedis  # noqa: E402
from bot.services import build_services  # noqa: E402
from sandbox.seed_contract import COLUMNS, ID_COLUMN, TIME_COLUMN  # noqa: E402
from sandbox.server import start_in_thread  # noqa: E402
from sandbox.state import SandboxConfig  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.export_helpers import cli, export_env, store_auth, table_rows, workbook_rows  # noqa: E402
from tests.oauth_helpers import authorize  # noqa: E402
from tests.stack import BridgeStack  # noqa: E402

FAULTS = {
    "server_error": 0.10,
    "rate_limit": 0.05,
    "lose_message": 0.05,
    "duplicate_message": 0.05,
    "jitter_seconds": 1.5,
    "deny_download": 0.03,
    "auto_scan": True,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--dates-only", action="store_true", help="the endpoint takes only date bounds")
    parser.add_argument("--faults", action="store_true", help="every fault knob on (as the e2e test)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        redis = EmbeddedRedis(work / "redis")
        redis.start()
        server = start_in_thread(SandboxConfig(redelivery_schedule=(0.2, 0.5, 1.0)))
        state = server.app.extensions["sandbox"]  # type: ignore[attr-defined]
        base_url = f"http://127.0.0.1:{server.server_port}"
        database_url = f"sqlite:///{work / 'bridge.db'}"
        settings = make_settings(
            work,
            database_url=database_url,
            redis_url=redis.url,
            feishu_base_url=base_url,
            var_dir=work / "var",
        )
        services = build_services(settings)
        init_schema(services.engine)
        authorize(services)
        env_over = {"EXPORT_FINER_BOUNDS": "false"} if args.dates_only else {}
        stack = BridgeStack(
            work,
            database_url,
            redis.url,
            base_url,
            workers=args.workers,
            cron=True,
            extra_env=export_env(base_url, **env_over),
        )
        try:
            stack.start()
            state.sender.config.webhook_url = f"{stack.base_url}/webhook/event"
            env = stack.env()
            store_auth(env, base_url)
            if args.faults:
                httpx.post(f"{base_url}/sandbox/contract/faults", json=FAULTS).raise_for_status()
                cli(env, "export", "login", "--headless", "--timeout", "30")
            started = time.perf_counter()
            status = json.loads(cli(env, "export", "run", "--json", timeout=3600).stdout)
            run_seconds = time.perf_counter() - started
            started = time.perf_counter()
            report = json.loads(cli(env, "export", "merge", "--json", check=False).stdout)
            merge_seconds = time.perf_counter() - started
            total = len(state.contract.records)
            with state.contract.lock:
                outcomes = [e.get("outcome") for e in state.contract.exports]
            with services.sessions() as session:
                via = list(session.scalars(select(ExportFile.downloaded_via)))
            truth = state.contract.truth()
            exact = table_rows(services) == truth
            merged_book = next((work / "var" / "exports").glob("*_merged.xlsx"))
            header, book_rows, book_count = workbook_rows(merged_book)
            book_exact = header == list(COLUMNS) and book_count == len(truth) and book_rows == truth
            files = sorted((work / "var" / "exports").glob("合同协同_*-*.xlsx"))
            files = [f for f in files if "_merged" not in f.name]
            started = time.perf_counter()
            plain = pd.concat([pd.read_excel(f, engine="openpyxl") for f in files], ignore_index=True)
            plain_seconds = time.perf_counter() - started
            started = time.perf_counter()
            merged = merge([SourceFile(f) for f in files], id_column=ID_COLUMN, time_column=TIME_COLUMN)
            read_seconds = time.perf_counter() - started
        finally:
            stack.stop()
            services.close()
            state.sender.close()
            server.shutdown()
            redis.stop()
    floor = math.ceil(total / 1000)
    print(
        f"records in the sandbox: {total}; merged: {report['totals']['records']}; "
        f"table equals sandbox: {exact}; workbook equals sandbox: {book_exact}; "
        f"duplicates removed: {report['totals']['duplicates_removed']}; report ok: {report['ok']}"
    )
    print(
        f"export calls: {status['calls']}  floor ceil({total}/1000) = {floor}  "
        f"ratio {status['calls'] / floor:.2f} (target ≤ 1.25 → ≤ {math.floor(1.25 * floor)})"
    )
    print(f"windows: {status['windows']}; not exported: {report['not_exported']}")
    print(f"list (count) calls to size windows: {status['count_calls']}")
    print(
        f"completion messages: {outcomes.count('lost')} lost, {outcomes.count('duplicated')} duplicated; "
        f"downloads: {via.count('api')} through the API, {via.count('browser')} through the web messenger"
    )
    print(f"export run wall time: {run_seconds:.1f} s")
    print(
        f"merge (calamine read, dedupe, workbook + CSV + table upsert, report): {merge_seconds:.1f} s "
        f"→ {report['totals']['rows_read'] / merge_seconds:,.0f} rows/s"
    )
    print(
        f"merge's read + normalise + dedupe + sort alone (calamine): {read_seconds:.1f} s "
        f"→ {merged.rows_read / read_seconds:,.0f} rows/s"
    )
    print(
        f"plain pandas + openpyxl read of the same {len(files)} files (read only): {plain_seconds:.1f} s "
        f"→ {len(plain) / plain_seconds:,.0f} rows/s; "
        f"read speed-up of merge over the plain read {plain_seconds / read_seconds:.1f}x"
    )


if __name__ == "__main__":
    main()
