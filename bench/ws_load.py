"""The websocket half of bench/intake.py: events pushed over one long connection to a real
`feishu-bridge listen` process by the sandbox's long-connection server (Feishu's side), with
the same two load shapes as the webhook runs:

* closed loop — `window` events in flight at all times (the next is pushed as soon as one is
  acknowledged), the analogue of wrk's `-c` connections;
* paced — events pushed at a fixed rate, in flight as many as that takes.

An acknowledgement is the listener's answer frame, sent only once the receipt is committed; its
latency is measured by the server from the first frame sent to the ack read. No re-sends: an
event not acknowledged within Feishu's 3 s counts as an error.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from sandbox.server import start_in_thread
from sandbox.state import SandboxConfig, SandboxState
from sandbox.ws_server import Delivery


@dataclass
class WsResult:
    window: int  # events in flight (closed loop), or 0 (paced)
    events: int
    seconds: float
    eps: float
    p50_ms: float
    p99_ms: float
    errors: int

    @staticmethod
    def median(rounds: list[WsResult]) -> WsResult:
        """Per-field medians across rounds; event and error counts are summed."""
        def mid(values) -> float:
            return statistics.median(values)

        return WsResult(rounds[0].window, sum(r.events for r in rounds), mid(r.seconds for r in rounds),
                        mid(r.eps for r in rounds), mid(r.p50_ms for r in rounds),
                        mid(r.p99_ms for r in rounds), sum(r.errors for r in rounds))


class Listener:
    """A sandbox in websocket mode and one `feishu-bridge listen` connected to it."""

    def __init__(self, env: dict[str, str], root: Path, log: Path) -> None:
        self.server = start_in_thread(SandboxConfig(event_mode="websocket"))
        self.state: SandboxState = self.server.app.extensions["sandbox"]  # type: ignore[attr-defined]
        base = f"http://127.0.0.1:{self.server.server_port}"
        env = dict(env, FEISHU_BASE_URL=base, FEISHU_EVENT_MODE="websocket")
        self.log = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "listen"], env=env, cwd=root,
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 90
        while not self.state.long_connection.snapshot()["connections"]:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the listener did not connect; see {log}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        self.state.sender.close()
        self.server.shutdown()


def _payload(run_tag: str, i: int) -> bytes:
    doc = {"schema": "2.0",
           "header": {"event_id": f"ws-{run_tag}-{i}", "event_type": "im.message.receive_v1",
                      "create_time": str(int(time.time() * 1000)), "tenant_key": "bench",
                      "app_id": "cli_bench"},
           "event": {"sender": {"sender_id": {"open_id": f"ou_{i % 97}"}, "sender_type": "user"},
                     "message": {"message_id": f"om_ws_{run_tag}_{i}", "chat_id": "oc_bench",
                                 "chat_type": "p2p", "message_type": "text",
                                 "content": json.dumps({"text": "hello"})}}}
    return json.dumps(doc, separators=(",", ":")).encode()


def run(listener: Listener, run_tag: str, seconds: float, *, window: int = 0, rate: float = 0) -> WsResult:
    """Push unique events for `seconds`: `window` in flight (closed loop) or at `rate` per second."""
    server = listener.state.long_connection
    done: list[Delivery] = []
    lock = threading.Condition()
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds
    in_flight = 0

    def push() -> None:
        nonlocal in_flight
        with lock:
            in_flight += 1
        server.push(_payload(run_tag, next(counter))).add_done_callback(finished)

    def finished(future: Future[Delivery]) -> None:
        nonlocal in_flight
        with lock:
            done.append(future.result())
            in_flight -= 1
            lock.notify_all()
        if window and time.monotonic() < deadline:
            push()  # closed loop: the next one as soon as one is acknowledged

    started = time.monotonic()
    if window:
        for _ in range(window):
            push()
    else:
        interval, sent = 1 / rate, 0
        while time.monotonic() < deadline:
            push()
            sent += 1
            time.sleep(max(0.0, started + sent * interval - time.monotonic()))
    with lock:
        lock.wait_for(lambda: time.monotonic() >= deadline and in_flight == 0, timeout=seconds + 30)
    elapsed = time.monotonic() - started
    ok = sorted(d.latency_ms for d in done if d.status == 200)
    p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))] if ok else float("nan")
    p50 = statistics.median(ok) if ok else float("nan")
    return WsResult(window, len(ok), elapsed, len(ok) / elapsed, p50, p99, len(done) - len(ok))
