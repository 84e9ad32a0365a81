"""Webhook latency while slow clients hold sockets open (issue 15's slow-body attack).

Two web processes run side by side in one run, on the same database, Redis and settings
(WEB_WORKERS=4, WEB_THREADS=32, the defaults):

* threads — gunicorn's gthread worker serving the Flask app directly: the web process before
  issue 15, where a thread reads each request body;
* shipped — the web process as `feishu-bridge web`/`up`/the Procfile run it: gunicorn's asyncio
  worker and `bot/processes/asgi.py`, which reads bodies whole under WEB_BODY_TIMEOUT_SECONDS
  before a thread runs Flask.

For each, signed Feishu events are sent at a steady rate (--rate per second, from a pool of
senders, latency counted from each event's planned send time so a stalled server cannot hide
behind a stalled sender) for --seconds with no attack, then again while --slow sockets each
announce a 100-byte body, send 2 bytes, and then trickle one byte a second (so no per-read
timeout fires); a socket the server closes is reopened at once, as an attacker would. A real
event that takes longer than 8 s counts as timed out (the issue's client timeout).

Usage: python bench/slow_clients.py [--slow 200] [--rate 20] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.intake import Gunicorn, bridge_env, signed_event  # noqa: E402
from bot.processes.web import APP  # noqa: E402
from sandbox.sender import EventSender, SenderConfig  # noqa: E402
from sandbox.state import SANDBOX_ENCRYPT_KEY, SANDBOX_VERIFICATION_TOKEN  # noqa: E402
from tests.slow_clients import SlowClients  # noqa: E402

CLIENT_TIMEOUT = 8.0


@dataclass
class Phase:
    server: str
    slow: int
    sent: int
    ok: int
    timed_out: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cut: int  # slow sockets the server answered 408 or closed


def send_events(url: str, sender: EventSender, tag: str, rate: float, seconds: float) -> list[float | None]:
    """Latency (s) of each event, None when it failed or took over CLIENT_TIMEOUT."""
    count = int(rate * seconds)
    local = threading.local()
    start = time.monotonic() + 0.5

    def one(i: int) -> float | None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        body, headers = signed_event(sender, tag, i)
        planned = start + i / rate
        time.sleep(max(0.0, planned - time.monotonic()))
        try:
            answer = session.post(url, data=body, headers=headers, timeout=CLIENT_TIMEOUT)
        except requests.RequestException:
            return None
        took = time.monotonic() - planned
        return took if answer.ok and took <= CLIENT_TIMEOUT else None

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, range(count)))


def measure(name: str, server: Gunicorn, sender: EventSender, slow: int, rate: float,
            seconds: float) -> Phase:
    attack = SlowClients(server.port, slow) if slow else None
    if attack:
        attack.start()
        time.sleep(2)  # let every slow socket reach the server and hold what it can
    try:
        latencies = send_events(server.url, sender, f"{name}{slow}{time.time_ns()}", rate, seconds)
    finally:
        if attack:
            attack.stop()
    done = sorted(x * 1000 for x in latencies if x is not None)
    pct = statistics.quantiles(done, n=100) if len(done) >= 2 else [float("nan")] * 99
    # Failed and timed-out events count as slower than any answered one.
    worst = [float("inf")] * (len(latencies) - len(done))
    everything = done + worst
    p99 = everything[min(len(everything) - 1, int(0.99 * len(everything)))]
    return Phase(name, slow, len(latencies), len(done), len(worst), pct[49] if done else float("nan"),
                 p99, max(everything), attack.cut if attack else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=200, help="slow sockets held open during the attack")
    parser.add_argument("--rate", type=float, default=20.0, help="real events per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fb-slow-"))
    from bot.db import init_schema, make_engine
    from bot.processes.redis_server import EmbeddedRedis

    redis = EmbeddedRedis(work / "redis")
    redis.start()
    database_url = f"sqlite:///{work / 'bench.db'}"
    engine = make_engine(database_url)
    init_schema(engine)
    engine.dispose()
    env = bridge_env(work, database_url, redis.url) | {"LOG_LEVEL": "ERROR"}
    sender = EventSender(SenderConfig(webhook_url="http://unused", encrypt_key=SANDBOX_ENCRYPT_KEY,
                                      verification_token=SANDBOX_VERIFICATION_TOKEN))
    from bot.config import Settings

    defaults = Settings(_env_file=None)
    print(f"# slow-clients bench — WEB_WORKERS={defaults.web_workers}, WEB_THREADS={defaults.web_threads}, "
          f"WEB_BODY_TIMEOUT_SECONDS={defaults.web_body_timeout_seconds:g}; {args.rate:g} events/s for "
          f"{args.seconds:g} s per phase; {args.slow} slow sockets; {os.cpu_count()} cores", flush=True)
    servers = {
        "threads": Gunicorn("bot.app:create_app()", env, work / "threads.log",
                            ("-k", "gthread", "--threads", str(defaults.web_threads))),
        "shipped": Gunicorn(APP, env, work / "shipped.log"),
    }
    phases: list[Phase] = []
    try:
        for slow in (0, args.slow):
            for name, server in servers.items():
                phase = measure(name, server, sender, slow, args.rate, args.seconds)
                phases.append(phase)
                print(f"  {name:8} slow={slow:<4} p50 {phase.p50_ms:7.1f} ms p99 {phase.p99_ms:8.1f} ms "
                      f"timed out {phase.timed_out}/{phase.sent}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        redis.stop()
        sender.close()

    print("\n| web process | slow sockets | events | answered 2xx | timed out (> 8 s) | p50 ms | p99 ms "
          "| max ms | slow sockets cut |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in phases:
        print(f"| {p.server} | {p.slow} | {p.sent} | {p.ok} | {p.timed_out} | {p.p50_ms:.1f} | "
              f"{_ms(p.p99_ms)} | {_ms(p.max_ms)} | {p.cut} |")
    shipped = {p.slow: p for p in phases if p.server == "shipped"}
    if len(shipped) == 2:
        calm, attacked = shipped[0], shipped[args.slow]
        print(f"\nshipped p99 under attack / without: {attacked.p99_ms / calm.p99_ms:.2f}")
    shutil.rmtree(work, ignore_errors=True)


def _ms(value: float) -> str:
    return "> 8000 (timeouts)" if value == float("inf") else f"{value:.1f}"


if __name__ == "__main__":
    main()
