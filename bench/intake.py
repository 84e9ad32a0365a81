"""Webhook intake throughput and ack latency under gunicorn, against a bare-Flask ceiling.

Both apps run under the same gunicorn settings (bot/processes/gunicorn_conf.py); wrk drives them with
signed Feishu events (half encrypted, every event id unique, so the bridge does its full
work per request: verify, decrypt, insert a receipt, enqueue a job). Two load shapes:

* closed loop — every connection sends its next request as soon as the last is answered:
  maximum throughput. Latency here is queueing by construction (Little's law: mean latency
  = connections / throughput), for the ceiling as much as for the bridge.
* paced — each connection waits between requests so the offered load is a fixed rate
  (--paced-rate); latency then measures the service time a sender sees under that load.

Each load runs several rounds, alternating which app goes first, and reports medians: the
machines here are noisy, and a single pair of runs can differ by a third.

With --websocket the same loads also go over Feishu's long connection to one `listen` process
(bench/ws_load.py): events/s and acknowledgement p50/p99, beside the webhook's figures.

Usage: python bench/intake.py [--db sqlite|postgres] [--seconds 10] [--rounds 3] [--paced-rate 500]
       [--websocket] [--thread-worker]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import ws_load  # noqa: E402
from bot.processes.web import APP  # noqa: E402
from sandbox.sender import EventSender, SenderConfig  # noqa: E402
from sandbox.state import (  # noqa: E402
    SANDBOX_APP_ID,
    SANDBOX_APP_SECRET,
    SANDBOX_ENCRYPT_KEY,
    SANDBOX_VERIFICATION_TOKEN,
)
from tests.servers import PostgresServer, free_port, wait_http  # noqa: E402

WRK_THREADS = 2

LUA_TEMPLATE = """
local data = dofile("%(data)s")
local n = #data
local nthreads = %(threads)d
local delay_ms = %(delay_ms)d
local counter = 0
local threads_seen = 0

function setup(thread)
  thread:set("tid", threads_seen)
  threads_seen = threads_seen + 1
end

function init(args)
  counter = tid
end

function request()
  local e = data[(counter %% n) + 1]
  counter = counter + nthreads
  return wrk.format("POST", "/webhook/event", {
    ["Content-Type"] = "application/json",
    ["X-Lark-Request-Timestamp"] = e[2],
    ["X-Lark-Request-Nonce"] = e[3],
    ["X-Lark-Signature"] = e[4],
  }, e[1])
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"p50\\": %%f, \\"p99\\": %%f, \\"mean\\": %%f}\\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000))
end
"""


@dataclass
class Result:
    label: str
    connections: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    total_requests: int = 0  # over all rounds (median() sums it)

    @staticmethod
    def median(results: list[Result]) -> Result:
        """Per-field medians across rounds; request, non-2xx and error counts are summed."""
        def mid(values: list[float]) -> float:
            return statistics.median(values)

        first = results[0]
        return Result(
            first.label, first.connections, int(mid([r.requests for r in results])),
            mid([r.seconds for r in results]), mid([r.rps for r in results]),
            mid([r.p50_ms for r in results]), mid([r.p99_ms for r in results]),
            sum(r.non_2xx for r in results), sum(r.errors for r in results),
            sum(r.requests for r in results),
        )


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
        return shutil.which("wrk") or sys.exit("wrk did not install")
    sys.exit("bench/intake.py needs wrk (apt-get install wrk)")


def signed_event(sender: EventSender, run_tag: str, i: int) -> tuple[bytes, dict[str, str]]:
    """The i-th of a run's unique message events, as Feishu delivers it (every other encrypted)."""
    doc = sender.envelope("im.message.receive_v1", {
        "sender": {"sender_id": {"open_id": f"ou_{i % 97}"}, "sender_type": "user"},
        "message": {"message_id": f"om_{run_tag}_{i}", "chat_id": "oc_bench", "chat_type": "p2p",
                    "message_type": "text", "content": json.dumps({"text": "hello"})},
    }, event_id=f"{run_tag}-{i}")
    return sender.wire(doc, encrypted=i % 2 == 0)


def bridge_env(work: Path, database_url: str, redis_url: str) -> dict[str, str]:
    """The environment the bench's web processes run in: the sandbox app's secrets, its own
    database, Redis, var/ and metrics directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEISHU_", "PROMETHEUS_", "WEB_"))}
    env.update({
        "FEISHU_APP_ID": SANDBOX_APP_ID, "FEISHU_APP_SECRET": SANDBOX_APP_SECRET,
        "FEISHU_ENCRYPT_KEY": SANDBOX_ENCRYPT_KEY, "FEISHU_VERIFICATION_TOKEN": SANDBOX_VERIFICATION_TOKEN,
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "VAR_DIR": str(work / "var"),
        "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"), "LOG_LEVEL": "WARNING",
    })
    (work / "metrics").mkdir(exist_ok=True)
    return env


def write_events(path: Path, count: int, run_tag: str) -> None:
    """A Lua data file of signed webhook requests with unique event ids."""
    sender = EventSender(SenderConfig(webhook_url="http://unused", encrypt_key=SANDBOX_ENCRYPT_KEY,
                                      verification_token=SANDBOX_VERIFICATION_TOKEN))
    with path.open("w") as out:
        out.write("return {\n")
        for i in range(count):
            body, headers = signed_event(sender, run_tag, i)
            fields = [json.dumps(headers[h]) for h in
                      ("X-Lark-Request-Timestamp", "X-Lark-Request-Nonce", "X-Lark-Signature")]
            out.write(f"{{[==[{body.decode()}]==],{','.join(fields)}}},\n")
        out.write("}\n")
    sender.close()


def run_wrk(wrk: str, url: str, script: Path, connections: int, seconds: int, label: str) -> Result:
    proc = subprocess.run(
        [wrk, "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
         "-s", str(script), url],
        capture_output=True, text=True, check=True,
    )
    out = proc.stdout
    requests = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
    duration_match = re.search(r"requests in ([\d.]+)(ms|s|m)", out)
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0}[duration_match.group(2)]
    duration = float(duration_match.group(1)) * scale
    stats = json.loads(out.split("JSON ", 1)[1].splitlines()[0])
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors = sum(int(x) for x in m.groups())
    return Result(label, connections, requests, duration, requests / duration, stats["p50"], stats["p99"],
                  non_2xx, errors)


class Gunicorn:
    def __init__(self, app: str, env: dict[str, str], log: Path, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        env = dict(env, PORT=str(self.port), HOST="127.0.0.1")
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:bot.processes.gunicorn_conf", *extra, app],
            env=env, cwd=ROOT, stdout=self.log, stderr=self.log,
        )
        wait_http(f"http://127.0.0.1:{self.port}/healthz", timeout=90)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook/event"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()


def count_receipts(database_url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM event_receipts")).scalar()
    engine.dispose()
    return int(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--paced-rate", type=int, default=500, help="offered req/s in the paced runs")
    parser.add_argument("--connections", default="50,200")
    parser.add_argument("--events", type=int, default=40000, help="unique events per bridge run")
    parser.add_argument("--modes", default="closed,paced")
    parser.add_argument("--thread-worker", action="store_true",
                        help="also measure the bridge under gunicorn's thread worker (the web process "
                             "before issue 15), side by side")
    parser.add_argument("--websocket", action="store_true",
                        help="also push events over the long connection to one `listen` process "
                             "(the same loads: in-flight windows for connections), side by side")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating bare/bridge rounds per load; the table shows medians")
    args = parser.parse_args()

    wrk = ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="fb-bench-"))
    from bot.db import init_schema, make_engine
    from bot.processes.redis_server import EmbeddedRedis

    redis = EmbeddedRedis(work / "redis")
    redis.start()
    postgres = PostgresServer.start() if args.db == "postgres" else None
    database_url = postgres.create_database() if postgres else f"sqlite:///{work / 'bench.db'}"
    engine = make_engine(database_url)
    init_schema(engine)
    engine.dispose()

    env = bridge_env(work, database_url, redis.url)
    from bot.config import load_settings

    effective = load_settings()
    settings = (f"gunicorn asgi worker + bot/processes/asgi.py, WEB_WORKERS={effective.web_workers}, "
                f"WEB_THREADS={effective.web_threads}; wrk -t{WRK_THREADS}")
    print(f"# intake bench — {settings}; database={args.db}; {args.seconds}s per run; "
          f"{os.cpu_count()} cores", flush=True)

    connections = [int(c) for c in args.connections.split(",")]
    results: list[tuple[str, Result, Result, int, Result | None]] = []
    bare = Gunicorn("bench.bare_app:create_asgi_app()", env, work / "bare.log")
    bridge = Gunicorn(APP, env, work / "bridge.log")
    threads = None
    if args.thread_worker:
        threads = Gunicorn("bot.app:create_app()", env, work / "threads.log",
                           ("-k", "gthread", "--threads", str(effective.web_threads)))
    listener = ws_load.Listener(env, ROOT, work / "listener.log") if args.websocket else None
    ws_results: list[tuple[str, int, ws_load.WsResult]] = []
    try:
        for mode in args.modes.split(","):
            for c in connections:
                delay_ms = 0 if mode == "closed" else max(1, int(1000 * c / args.paced_rate))
                ceilings: list[Result] = []
                ours: list[Result] = []
                theirs: list[Result] = []
                recorded = 0
                for round_no in range(args.rounds):
                    data = work / f"events-{mode}-{c}-{round_no}.lua"
                    write_events(data, args.events, f"{mode}{c}r{round_no}")
                    script = work / f"wrk-{mode}-{c}-{round_no}.lua"
                    script.write_text(LUA_TEMPLATE % {"data": data, "threads": WRK_THREADS,
                                                      "delay_ms": delay_ms})
                    before = count_receipts(database_url)
                    # Alternate which app goes first, so drift in the machine's load hits both.
                    order = ("bare", "bridge") if round_no % 2 == 0 else ("bridge", "bare")
                    for which in order:
                        server = bare if which == "bare" else bridge
                        result = run_wrk(wrk, server.url, script, c, args.seconds, which)
                        (ceilings if which == "bare" else ours).append(result)
                    time.sleep(1)
                    recorded += count_receipts(database_url) - before
                    if threads:  # its own events: the bridge's would all be duplicates here
                        write_events(data, args.events, f"threads{mode}{c}r{round_no}")
                        theirs.append(run_wrk(wrk, threads.url, script, c, args.seconds, "threads"))
                    if ours[-1].requests > args.events:
                        print(f"warning: {ours[-1].requests} requests > {args.events} unique events; "
                              "raise --events", file=sys.stderr)
                    print(f"  {mode} c={c} round {round_no + 1}: bare {ceilings[-1].rps:.0f} req/s, "
                          f"bridge {ours[-1].rps:.0f} req/s", flush=True)
                ceiling, mine = Result.median(ceilings), Result.median(ours)
                other = Result.median(theirs) if theirs else None
                results.append((mode, ceiling, mine, recorded, other))
                if other:
                    print(f"{mode:6} c={c:<4} bridge under the thread worker {other.rps:8.0f} req/s "
                          f"p50 {other.p50_ms:6.1f} ms p99 {other.p99_ms:6.1f} ms", flush=True)
                if listener:
                    rounds = [ws_load.run(listener, f"{mode}{c}r{r}", args.seconds,
                                          window=c if mode == "closed" else 0,
                                          rate=0 if mode == "closed" else args.paced_rate)
                              for r in range(args.rounds)]
                    ws = ws_load.WsResult.median(rounds)
                    ws_results.append((mode, c, ws))
                    print(f"{mode:6} c={c:<4} long connection {ws.eps:8.0f} events/s p50 {ws.p50_ms:6.1f} ms "
                          f"p99 {ws.p99_ms:6.1f} ms | errors {ws.errors}", flush=True)
                print(f"{mode:6} c={c:<4} bare {ceiling.rps:8.0f} req/s p50 {ceiling.p50_ms:6.1f} ms "
                      f"p99 {ceiling.p99_ms:6.1f} ms | bridge {mine.rps:8.0f} req/s "
                      f"p50 {mine.p50_ms:6.1f} ms p99 {mine.p99_ms:6.1f} ms | "
                      f"ratio {mine.rps / ceiling.rps:4.2f} | non-2xx {mine.non_2xx} "
                      f"socket errors {mine.errors} | receipts {recorded} of {mine.total_requests}",
                      flush=True)
    finally:
        if listener:
            listener.stop()
        bare.stop()
        bridge.stop()
        if threads:
            threads.stop()
        redis.stop()
        if postgres:
            postgres.stop()

    print(f"\nMedians of {args.rounds} alternating rounds of {args.seconds} s each.\n")
    print("| load | conns | bare req/s | bare p50 / p99 ms | bridge req/s | bridge p50 / p99 ms "
          "| throughput ratio | bridge non-2xx | bridge requests / receipts recorded |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, ceiling, ours, recorded, _ in results:
        print(f"| {mode} | {ours.connections} | {ceiling.rps:.0f} | {ceiling.p50_ms:.1f} / "
              f"{ceiling.p99_ms:.1f} | {ours.rps:.0f} | {ours.p50_ms:.1f} / {ours.p99_ms:.1f} | "
              f"{ours.rps / ceiling.rps:.2f} | {ours.non_2xx} | {ours.total_requests} / {recorded} |")
    if args.thread_worker:
        print("\n| load | conns | bridge req/s | bridge p50 / p99 ms | thread worker req/s "
              "| thread worker p50 / p99 ms | bridge / thread worker |")
        print("|---|---|---|---|---|---|---|")
        for mode, _, ours, _, other in results:
            print(f"| {mode} | {ours.connections} | {ours.rps:.0f} | {ours.p50_ms:.1f} / {ours.p99_ms:.1f} | "
                  f"{other.rps:.0f} | {other.p50_ms:.1f} / {other.p99_ms:.1f} | {ours.rps / other.rps:.2f} |")
    if ws_results:
        print("\n| load | conns (webhook) / events in flight (connection) | webhook req/s "
              "| webhook ack p50 / p99 ms | long connection events/s | long connection ack p50 / p99 ms "
              "| connection / webhook | connection errors |")
        print("|---|---|---|---|---|---|---|---|")
        webhook = {(mode, ours.connections): ours for mode, _, ours, _, _ in results}
        for mode, c, ws in ws_results:
            hook = webhook[(mode, c)]
            print(f"| {mode} | {c} | {hook.rps:.0f} | {hook.p50_ms:.1f} / {hook.p99_ms:.1f} | {ws.eps:.0f} | "
                  f"{ws.p50_ms:.1f} / {ws.p99_ms:.1f} | {ws.eps / hook.rps:.2f} | {ws.errors} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
