"""Full bitable sync throughput and API calls against the floor.

Runs the sandbox (seeded: 253 + 120 + 50,000 records in one wiki-hosted app) in a thread, an
embedded Redis and SQLite (or --db postgres), and syncs the app once through the real SDK.
Prints records/s and the API calls made against the floor: per table ceil(N/500) record
pages, plus the schema calls (wiki node, subscribe, table list, one field page per table).

Usage: python bench/cache_sync.py [--db sqlite|postgres] [--rate-limit 0.2]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.caches import store  # noqa: E402
from bot.caches.sources import parse_source  # noqa: E402
from bot.caches.sync import sync_source  # noqa: E402
from bot.db import init_schema  # noqa: E402
from bot.processes.redis_server import EmbeddedRedis  # noqa: E402
from bot.services import build_services  # noqa: E402
from sandbox.seed import QUALITY_APP, QUALITY_NODE  # noqa: E402
from sandbox.server import start_in_thread  # noqa: E402
from sandbox.state import SandboxConfig  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rate-limit", type=float, default=0.0, help="share of calls answered 429")
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="fb-cache-bench-"))
    redis = EmbeddedRedis(work / "redis")
    redis.start()
    postgres = PostgresServer.start() if args.db == "postgres" else None
    database_url = postgres.create_database() if postgres else f"sqlite:///{work / 'bench.db'}"
    server = start_in_thread(SandboxConfig())
    state = server.app.extensions["sandbox"]  # type: ignore[attr-defined]
    try:
        settings = make_settings(work, database_url=database_url, redis_url=redis.url, log_json=False,
                                 feishu_base_url=f"http://127.0.0.1:{server.server_port}",
                                 feishu_retry_max_wait=1.0)
        services = build_services(settings)
        init_schema(services.engine)
        store.add_source(services.engine, "quality", QUALITY_NODE, parse_source(QUALITY_NODE), 3600)
        app = state.apps[QUALITY_APP]
        for table in app.tables.values():
            table.ensure_built()
        sizes = {t.name: len(t.records) for t in app.tables.values()}
        state.faults.update({"rate_limit": args.rate_limit})
        started = time.perf_counter()
        result = sync_source(services, "quality")
        seconds = time.perf_counter() - started
        floor_pages = sum(math.ceil(n / 500) for n in sizes.values())
        schema_calls = 3 + len(sizes)
        answered_429 = sum(1 for c in state.api_calls if c["status"] == 429)
        print(f"# cache sync bench — database={args.db}, rate limit {args.rate_limit:.0%}")
        print(f"tables: {sizes}")
        print(f"records: {result.records} in {seconds:.2f} s → {result.records / seconds:,.0f} records/s")
        print(f"API calls: {result.api_calls} (record pages {result.api_calls - schema_calls}, "
              f"schema {schema_calls}); floor {floor_pages} + {schema_calls} = {floor_pages + schema_calls}; "
              f"ratio {result.api_calls / (floor_pages + schema_calls):.2f}; "
              f"429s answered (retried by the gateway): {answered_429}")
        services.close()
    finally:
        server.shutdown()
        redis.stop()
        if postgres:
            postgres.stop()


if __name__ == "__main__":
    main()
