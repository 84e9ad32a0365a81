"""Pipeline backfill: one run over N days against N one-day runs, in bitable calls and time.

Runs the sandbox (Feishu's bitable and the fictional ads platform) in a thread, an embedded
Redis and SQLite (or --db postgres), and runs the shipped example pipeline
(`examples/pipelines/ads-daily.json`: the ads platform's daily report into 广告日报) in this
process, through the real lark-oapi SDK, three ways:

  (a) one backfill run over all N days into a fresh empty table: one read of the table, every
      day planned together, creates in batches of 1,000;
  (b) N one-day runs, oldest day first, into another fresh empty table — what a daily script
      run N times does (each run is still the bridge's: it reads the table, writes, reads back);
  (c) the backfill of (a) again, on its now full table: it should write nothing.

For each it prints the rows written, the write calls the sandbox answered (per endpoint, and
how many it refused), the runs' bitable calls (`runs.status(...).calls`: field pages, record
pages, batches — one per gateway call, its retries not counted) with, in brackets, the bitable
requests the sandbox answered (retries counted), the floor (ceil(rows/1000) creates + 1 field
page + the record pages needed to read the table and read it back), wall seconds (the part up
to each run's last day fetched from the ads platform, and the rest: writing and verifying) and
rows/s, then the ratio of (b) to (a). A run re-queued after a failed attempt (only with faults)
is run again at once, as a worker would after its backoff. Each table is then compared with the platform's own
rows (`/sandbox/ads/report`): PASS/FAIL lines, exit status 1 on any FAIL.

The platform's "today" is fixed at --last + 1 day (its rows are a pure function of the date),
so the figures are the same on any day. PIPELINE_REREAD_DELAY_SECONDS is 0 unless
--reread-delay is given (the shipped default is 1 s per run, before the read back).

Usage: python bench/pipeline_backfill.py [--days 90] [--last 2026-11-29] [--db sqlite|postgres]
                                         [--fault-rate 0.2] [--seed N] [--reread-delay 0]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bot.config import ProviderCredentials  # noqa: E402
from bot.db import init_schema  # noqa: E402
from bot.pipelines import runner, runs, store  # noqa: E402
from bot.processes.redis_server import EmbeddedRedis  # noqa: E402
from bot.services import Services, build_services  # noqa: E402
from sandbox.seed import ADS_DAILY_TABLE_ID, PIPELINE_APP_TOKEN  # noqa: E402
from sandbox.seed_ads import ADS_APP_ID, ADS_SECRET  # noqa: E402
from sandbox.server import start_in_thread  # noqa: E402
from sandbox.state import SandboxConfig, SandboxState  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

EXAMPLE = ROOT / "examples" / "pipelines" / "ads-daily.json"
LAST_DAY = date(2026, 11, 29)
CREATE_BATCH, READ_PAGE = 1000, 500
ZONE = ZoneInfo("Asia/Shanghai")
Row = tuple[str, str, str, float, int, int, int]


@dataclass
class Phase:
    """One way of writing the days: its runs' counts, the sandbox's write calls, the time."""

    label: str
    empty_table: bool = True  # the runs start from an empty table (the floor includes the writes)
    runs: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    calls: int = 0  # the runs' bitable calls (runs.status(...).calls)
    http: int = 0  # bitable requests the sandbox answered (every retry counted)
    retried: int = 0  # runs re-queued after a failed attempt and run again
    seconds: float = 0.0
    fetch_seconds: float = 0.0  # of which: from each run's start to its last day fetched
    writes: dict[str, dict[str, int]] = field(default_factory=dict)  # {endpoint: {code: n}}
    failures: list[str] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.created + self.updated + self.deleted

    def write_calls(self, *, refused: bool = False) -> int:
        return sum(n for by_code in self.writes.values() for code, n in by_code.items()
                   if (code != "0") == refused)


# -- the sandbox's controls (loopback HTTP, as the tests drive them) ---------------------------


def grant(services: Services, base_url: str) -> None:
    """A fresh grant on the ads platform, stored as `auth provider-login ads` would."""
    issued = httpx.post(f"{base_url}/sandbox/ads/grant").json()
    services.provider_tokens.store_grant("ads", refresh_token=issued["refresh_token"],
                                         access_token=issued["access_token"], expires_in=issued["expires_in"],
                                         refresh_expires_in=issued["refresh_token_expires_in"])


def new_table(base_url: str, state: SandboxState, name: str) -> str:
    """An empty table in the pipeline app with the fields of the seeded 广告日报."""
    seeded = state.apps[PIPELINE_APP_TOKEN].tables[ADS_DAILY_TABLE_ID]
    fields = [{"field_name": f.field_name, "type": f.type, "property": f.property} for f in seeded.fields]
    made = httpx.post(f"{base_url}/sandbox/bitable/tables", json={"name": name, "fields": fields})
    made.raise_for_status()
    return str(made.json()["table_id"])


def bitable_requests(base_url: str) -> int:
    """Requests the sandbox answered on bitable's open API so far (every attempt of a call)."""
    items = httpx.get(f"{base_url}/sandbox/calls").json()["items"]
    return sum(1 for c in items if c["path"].startswith("/open-apis/bitable/"))


def write_counts(base_url: str) -> dict[str, dict[str, int]]:
    return httpx.get(f"{base_url}/sandbox/bitable/writes").json()["calls"]


def since(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for endpoint, by_code in after.items():
        for code, n in by_code.items():
            delta = n - before.get(endpoint, {}).get(code, 0)
            if delta:
                out.setdefault(endpoint, {})[code] = delta
    return out


def truth(base_url: str, first: date, last: date) -> list[Row]:
    """The platform's rows for the days, as the table should hold them."""
    answer = httpx.get(f"{base_url}/sandbox/ads/report", params={"from": first.isoformat(),
                                                                 "to": last.isoformat()}).json()
    return [(r["stat_date"], str(r["advertiser_id"]), str(r["campaign_id"]), round(float(r["cost"]), 2),
             int(r["show"]), int(r["click"]), int(r["convert"])) for r in answer["list"]]


def table_rows(base_url: str, table_id: str) -> list[Row]:
    """The table's records, in the shape of `truth` (日期 is ms at midnight in Asia/Shanghai)."""
    answer = httpx.get(f"{base_url}/sandbox/bitable/tables/{PIPELINE_APP_TOKEN}/{table_id}/rows").json()
    out = []
    for record in answer["rows"]:
        f = record["fields"]
        day = datetime.fromtimestamp(f["日期"] / 1000, UTC).astimezone(ZONE).date().isoformat()
        out.append((day, f["账户ID"], f["计划ID"], round(float(f["消耗"]), 2), int(f["展示"]), int(f["点击"]),
                    int(f["转化"])))
    return out


def exact(base_url: str, table_id: str, expected: list[Row]) -> tuple[bool, str]:
    """Whether the table holds exactly the platform's rows, once each; and how it differs."""
    rows = table_rows(base_url, table_id)
    held, wanted = set(rows), set(expected)
    duplicates, missing, extra = len(rows) - len(held), len(wanted - held), len(held - wanted)
    if not (duplicates or missing or extra):
        return True, f"{len(rows)} rows = the platform's {len(wanted)}, no duplicates"
    return False, (f"{len(rows)} rows against the platform's {len(wanted)}: {missing} missing, {extra} not "
                   f"the platform's, {duplicates} duplicated")


# -- running the pipeline ----------------------------------------------------------------------


def attempt(services: Services, run_id: int, phase: Phase) -> runner.Outcome:
    """One attempt of a run; its time to the last day fetched is added to the phase's fetch time."""
    started = fetched = time.perf_counter()

    def progress(step: str, done: int, total: int) -> None:
        nonlocal fetched
        if step == "fetch":
            fetched = time.perf_counter()

    outcome = runner.run_pipeline(services, run_id, progress=progress)
    phase.fetch_seconds += fetched - started
    return outcome


def run_days(services: Services, base_url: str, phase: Phase, name: str,
             runs_of_days: list[list[date]]) -> Phase:
    """Create and run (in this process) one run per list of days, one after the other. A run
    re-queued after a failed attempt is run again at once, as a worker would after its backoff
    (PIPELINE_RETRY_SECONDS × attempts, not waited here), up to PIPELINE_MAX_ATTEMPTS."""
    before, requests_before = write_counts(base_url), bitable_requests(base_url)
    started = time.perf_counter()
    for days in runs_of_days:
        run_id = runs.create(services.engine, name, days, "manual")
        outcome = attempt(services, run_id, phase)
        while outcome.state == "queued":
            phase.retried += 1
            outcome = attempt(services, run_id, phase)
        status = runs.status(services.engine, run_id)
        phase.runs += 1
        phase.created += status.created
        phase.updated += status.updated
        phase.deleted += status.deleted
        phase.calls += status.calls
        if outcome.state != "succeeded" or not (status.summary or {}).get("ok"):
            phase.failures.append(f"run {run_id} ({days[0]}…{days[-1]}): {outcome.state}: {outcome.text}")
    phase.seconds = time.perf_counter() - started
    phase.writes = since(write_counts(base_url), before)
    phase.http = bitable_requests(base_url) - requests_before
    return phase


def floor(rows: int, *, empty_table: bool) -> tuple[int, int]:
    """The fewest calls that write `rows` into an empty table (creates; reads: the field page,
    the empty table's one page, the read back), or re-check a full one (reads: fields + pages)."""
    pages = math.ceil(rows / READ_PAGE)
    if empty_table:
        return math.ceil(rows / CREATE_BATCH), 1 + 1 + pages
    return 0, 1 + pages


def describe_writes(writes: dict[str, dict[str, int]]) -> str:
    """`create 2, update 1 (+3 refused: 1254290 ×1, 99991400 ×2)` from the sandbox's counts."""
    ok = [f"{endpoint.removeprefix('batch_')} {by_code['0']}" for endpoint, by_code in sorted(writes.items())
          if by_code.get("0")]
    refused: dict[str, int] = {}
    for by_code in writes.values():
        for code, n in by_code.items():
            if code != "0":
                refused[code] = refused.get(code, 0) + n
    text = ", ".join(ok) or "0"
    if refused:
        text += (f" (+{sum(refused.values())} refused: "
                 + ", ".join(f"{code} ×{n}" for code, n in sorted(refused.items())) + ")")
    return text


def report(phases: list[Phase], rows: int) -> None:
    header = ("run", "runs", "rows written", "write calls answered ok (+ refused)", "bitable calls (HTTP)",
              "floor (creates + reads)", "seconds (fetch + rest)", "rows/s")
    lines = []
    for p in phases:
        creates, reads = floor(rows, empty_table=p.empty_table)
        rate = f"{p.written / p.seconds:,.0f}" if p.written else "—"
        runs_text = f"{p.runs} (+{p.retried} retried)" if p.retried else str(p.runs)
        lines.append((p.label, runs_text, f"{p.written:,} (+{p.created} ~{p.updated} -{p.deleted})",
                      describe_writes(p.writes), f"{p.calls} ({p.http})",
                      f"{creates} + {reads} = {creates + reads}",
                      f"{p.seconds:.2f} ({p.fetch_seconds:.2f} + {p.seconds - p.fetch_seconds:.2f})", rate))
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    for line in [header, *lines]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


# -- main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=90, help="days to backfill (1–366)")
    parser.add_argument("--last", type=date.fromisoformat, default=LAST_DAY, help="the last day (YYYY-MM-DD)")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--fault-rate", type=float, default=0.0,
                        help="share of bitable write calls the sandbox refuses (1254290, 429 or 504)")
    parser.add_argument("--seed", type=int, default=SandboxConfig().seed,
                        help="the sandbox's random seed (which write calls the faults hit)")
    parser.add_argument("--reread-delay", type=float, default=0.0,
                        help="PIPELINE_REREAD_DELAY_SECONDS (shipped default 1)")
    args = parser.parse_args()
    if not 1 <= args.days <= 366:
        parser.error("--days must be 1–366 (PIPELINE_MAX_DAYS)")

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # a re-queued run's traceback: the table counts the retry, a run that fails names its error
    logging.getLogger("bot.pipelines.runner").setLevel(logging.CRITICAL)
    first, last = args.last - timedelta(days=args.days - 1), args.last
    days = [first + timedelta(days=n) for n in range(args.days)]
    work = Path(tempfile.mkdtemp(prefix="fb-pipeline-bench-"))
    redis = EmbeddedRedis(work / "redis")
    postgres: PostgresServer | None = None
    server = None
    services: Services | None = None
    try:
        redis.start()
        postgres = PostgresServer.start() if args.db == "postgres" else None
        database_url = postgres.create_database() if postgres else f"sqlite:///{work / 'bench.db'}"
        server = start_in_thread(SandboxConfig(seed=args.seed))
        state: SandboxState = server.app.extensions["sandbox"]  # type: ignore[attr-defined]
        base_url = f"http://127.0.0.1:{server.server_port}"
        providers = {"ads": ProviderCredentials(client_id=ADS_APP_ID, client_secret=ADS_SECRET,
                                                api_url=f"{base_url}/ads")}
        settings = make_settings(work, database_url=database_url, redis_url=redis.url, log_json=False,
                                 feishu_base_url=base_url, feishu_retry_max_wait=1.0,
                                 oauth_providers=providers, pipeline_modules="bot.pipelines.examples",
                                 pipeline_reread_delay_seconds=args.reread_delay)
        services = build_services(settings)
        init_schema(services.engine)
        httpx.post(f"{base_url}/sandbox/ads/today", json={"date": (last + timedelta(days=1)).isoformat()})
        grant(services, base_url)
        example = json.loads(EXAMPLE.read_text())
        tables = {"backfill": new_table(base_url, state, "广告日报-回填"),
                  "daily": new_table(base_url, state, "广告日报-逐日"),
                  "warmup": new_table(base_url, state, "广告日报-预热")}
        for name, table_id in tables.items():
            store.add(services, {**example, "name": f"ads-{name}",
                                 "target": {"app_token": PIPELINE_APP_TOKEN, "table_id": table_id}})
        if args.fault_rate:
            httpx.post(f"{base_url}/sandbox/faults", json={"bitable_write_error_rate": args.fault_rate})
        expected = truth(base_url, first, last)
        # not measured: the first run imports lark-oapi's bitable models and fetches the tenant
        # token; one day before the range into a table of its own
        warmup = run_days(services, base_url, Phase("warm-up"), "ads-warmup", [[first - timedelta(days=1)]])

        print(f"# pipeline backfill bench — {args.days} days ({first} … {last}), database={args.db}, "
              f"bitable write faults {args.fault_rate:.0%} (seed {args.seed}), "
              f"reread delay {args.reread_delay:g} s")
        print(f"platform rows: {len(expected):,} ({len(expected) / args.days:.1f} a day); each run fetches "
              f"every day from the ads platform (1 + 7 calls a day) before it writes")
        a = run_days(services, base_url, Phase(f"(a) one {args.days}-day backfill"), "ads-backfill", [days])
        a_exact = exact(base_url, tables["backfill"], expected)
        b = run_days(services, base_url, Phase(f"(b) {args.days} one-day runs"), "ads-daily",
                     [[d] for d in days])
        b_exact = exact(base_url, tables["daily"], expected)
        c = run_days(services, base_url, Phase("(c) the backfill again", empty_table=False), "ads-backfill",
                     [days])
        c_exact = exact(base_url, tables["backfill"], expected)

        report([a, b, c], len(expected))
        print(f"(b) / (a): bitable calls {b.calls / max(a.calls, 1):.1f}×, write calls "
              f"{b.write_calls() / max(a.write_calls(), 1):.1f}×, "
              f"time {b.seconds / max(a.seconds, 1e-9):.1f}× (after fetching: "
              f"{(b.seconds - b.fetch_seconds) / max(a.seconds - a.fetch_seconds, 1e-9):.1f}×)")
        checks = [
            *([("warm-up run", False, "it failed (below)")] if warmup.failures else []),
            ("(a) table = the platform's rows", a_exact[0] and not a.failures, a_exact[1]),
            ("(b) table = the platform's rows", b_exact[0] and not b.failures, b_exact[1]),
            ("(c) table still exact, 0 write calls", c_exact[0] and not c.failures
             and c.write_calls() + c.write_calls(refused=True) == 0 and c.written == 0,
             f"{c_exact[1]}; {c.write_calls() + c.write_calls(refused=True)} write calls"),
        ]
        for phase in (warmup, a, b, c):
            for failure in phase.failures:
                print(f"  {phase.label}: {failure}")
        for what, ok, detail in checks:
            print(f"{'PASS' if ok else 'FAIL'} {what}: {detail}")
        return 0 if all(ok for _, ok, _ in checks) else 1
    finally:
        if services is not None:
            services.close()
        if server is not None:
            server.app.extensions["sandbox"].sender.close()  # type: ignore[attr-defined]
            server.shutdown()
        redis.stop()
        if postgres:
            postgres.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
