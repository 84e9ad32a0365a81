"""Coze sync costs, measured side by side in one run, on SQLite and PostgreSQL:

1. write throughput of a table with the sync triggers vs the same table without (target ≥ 0.6×),
   for three workloads: one insert per transaction, mixed insert/update/delete in transactions
   of 50, and a 5,000-row bulk insert;
2. dispatch throughput: outbox rows delivered per second to the sandbox's Coze (a separate
   process), next to the sandbox's own ceiling (the same calls posted straight with httpx from
   the same number of threads) — target ≥ 200 deliveries/s.

    python bench/coze.py [--rows 2000] [--deliveries 5000] [--sqlite-only]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import Column, Table, delete, insert, update  # noqa: E402

from bot.coze import outbox, templates  # noqa: E402
from bot.coze.dispatch import drain  # noqa: E402
from bot.coze.spec import TemplateCreate  # noqa: E402
from bot.db import init_schema  # noqa: E402
from bot.processes.redis_server import EmbeddedRedis  # noqa: E402
from bot.services import build_services, install  # noqa: E402
from sandbox.coze import COZE_SANDBOX_KEY  # noqa: E402
from sandbox.demo_tables import CUSTOMERS, METADATA  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

FIELDS = ["uuid", "customer_name", "customer_code", "phone", "email", "balance", "is_active", "updated_at"]


def twin(name: str) -> Table:
    """A copy of the demo customers table under another name."""
    return Table(
        name,
        METADATA,
        *(Column(c.name, c.type, primary_key=c.primary_key) for c in CUSTOMERS.columns),
        extend_existing=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sandbox(work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(work / "sandbox.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "sandbox", "--port", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.post(f"{url}/sandbox/coze/reset", timeout=1).raise_for_status()
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("sandbox did not start")


def row(i: int) -> dict:
    return {
        "id": i,
        "uuid": f"00000000-0000-4000-8000-{i:012d}",
        "customer_name": f"客户{i}",
        "customer_code": f"C{i:06d}",
        "phone": f"138{i:08d}",
        "email": f"c{i}@example.com",
        "address": "上海",
        "balance": Decimal(i % 100000) / 100,
        "is_active": i % 3 != 0,
        "updated_at": datetime(2024, 1, 1) + timedelta(minutes=i),
    }


def single_inserts(engine, table: Table, n: int) -> float:
    started = time.perf_counter()
    for i in range(1, n + 1):
        with engine.begin() as connection:
            connection.execute(insert(table), [row(i)])
    return n / (time.perf_counter() - started)


def mixed(engine, table: Table, n: int, seed: int = 3) -> float:
    """Transactions of 50 changes: 40% inserts, 45% updates of a selected field, 15% deletes."""
    rng = random.Random(seed)
    live: list[int] = []
    next_id = 10**6
    started = time.perf_counter()
    for _ in range(n // 50):
        with engine.begin() as connection:
            for _ in range(50):
                roll = rng.random()
                if not live or roll < 0.4:
                    next_id += 1
                    connection.execute(insert(table), [row(next_id)])
                    live.append(next_id)
                elif roll < 0.85:
                    i = rng.choice(live)
                    connection.execute(
                        update(table).where(table.c.id == i).values(phone=f"139{rng.randrange(10**8)}")
                    )
                else:
                    i = live.pop(rng.randrange(len(live)))
                    connection.execute(delete(table).where(table.c.id == i))
    return (n // 50 * 50) / (time.perf_counter() - started)


def bulk(engine, table: Table, n: int) -> float:
    rows = [row(i) for i in range(2 * 10**6, 2 * 10**6 + n)]
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(insert(table), rows)
    return n / (time.perf_counter() - started)


def write_bench(services, plain: Table, synced: Table, rows: int) -> list[tuple[str, float, float]]:
    results = []
    for name, work, n in (
        ("1 insert / transaction", single_inserts, rows),
        ("mixed, 50 / transaction", mixed, rows * 5),
        ("bulk insert, 1 transaction", bulk, 5000),
    ):
        speeds = {"plain": [], "synced": []}
        for _ in range(2):  # alternate, keep the better of two: less noise on a 2-core machine
            for label, table in (("plain", plain), ("synced", synced)):
                with services.engine.begin() as connection:
                    connection.execute(delete(table))
                speeds[label].append(work(services.engine, table, n))
        results.append((name, max(speeds["plain"]), max(speeds["synced"])))
    return results


def dispatch_bench(services, synced: Table, url: str, deliveries: int) -> tuple[float, float]:
    with services.engine.begin() as connection:
        connection.execute(delete(synced))
    with services.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM coze_outbox")
        connection.execute(insert(synced), [row(i) for i in range(5 * 10**6, 5 * 10**6 + deliveries)])
    httpx.post(f"{url}/sandbox/coze/reset").raise_for_status()
    started = time.perf_counter()
    while outbox.counts(services.engine)["pending"]:
        drain(services, budget=60)
    elapsed = time.perf_counter() - started
    done = outbox.counts(services.engine)
    assert done["delivered"] == deliveries and done["dead"] == 0, done
    ok = httpx.get(f"{url}/sandbox/coze/calls", params={"ok": 1}).json()["count"]
    assert ok == deliveries, (ok, deliveries)
    return deliveries / elapsed, ceiling(url, services.settings.coze_dispatch_threads, deliveries)


def ceiling(url: str, threads: int, n: int) -> float:
    """The sandbox's own rate for the same call, posted straight from the same number of threads."""
    body = {"workflow_id": "customer_sync_workflow", "parameters": {"user_id": "x", "customer_name": "客户"}}
    headers = {"Authorization": f"Bearer {COZE_SANDBOX_KEY}"}
    with httpx.Client(limits=httpx.Limits(max_connections=64)) as client:
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(
                    lambda _: client.post(
                        f"{url}/v1/workflow/run", json=body, headers=headers
                    ).raise_for_status(),
                    range(n),
                )
            )
        return n / (time.perf_counter() - started)


def run(label: str, database_url: str, redis_url: str, sandbox_url: str, work: Path, args) -> None:
    settings = make_settings(
        work / label,
        database_url=database_url,
        redis_url=redis_url,
        log_level="WARNING",
        coze_batch_size=args.batch,
        coze_dispatch_threads=args.threads,
    )
    services = build_services(settings)
    init_schema(services.engine)
    install(services)
    plain, synced = twin("bench_plain"), twin("bench_synced")
    METADATA.create_all(services.engine, tables=[plain, synced])
    templates.create(
        services,
        TemplateCreate(
            table_name="bench_synced",
            config_title="bench",
            coze_workflow_id="customer_sync_workflow",
            coze_api_url=sandbox_url,
            coze_api_key=COZE_SANDBOX_KEY,
            selected_fields=FIELDS,
            sync_on_insert=True,
            sync_on_update=True,
            sync_on_delete=True,
        ),
    )
    print(f"\n== {label} ==")
    print(f"{'write workload':<28}{'plain rows/s':>14}{'with triggers':>15}{'ratio':>8}")
    for name, plain_speed, synced_speed in write_bench(services, plain, synced, args.rows):
        print(f"{name:<28}{plain_speed:>14,.0f}{synced_speed:>15,.0f}{synced_speed / plain_speed:>8.2f}")
    rate, limit = dispatch_bench(services, synced, sandbox_url, args.deliveries)
    print(
        f"dispatch: {args.deliveries} deliveries at {rate:,.0f}/s through cozepy "
        f"(sandbox ceiling with {args.threads} threads of plain httpx: {limit:,.0f}/s; "
        f"ratio {rate / limit:.2f})"
    )
    services.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2000, help="single-insert transactions (mixed: 5×)")
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8, help="COZE_DISPATCH_THREADS")
    parser.add_argument("--batch", type=int, default=200, help="COZE_BATCH_SIZE")
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("cozepy").setLevel(logging.ERROR)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        redis = EmbeddedRedis(work / "redis")
        redis.start()
        sandbox, url = start_sandbox(work)
        try:
            run("SQLite", f"sqlite:///{work / 'bench.db'}", redis.url, url, work, args)
            if not args.sqlite_only:
                postgres = PostgresServer.start()
                try:
                    run("PostgreSQL", postgres.create_database(), redis.url, url, work, args)
                finally:
                    postgres.stop()
        finally:
            sandbox.terminate()
            sandbox.wait(10)
            redis.stop()


if __name__ == "__main__":
    main()
