"""Adversarial: the processes under a Redis blip, children that die or ignore SIGTERM.

Issue 15, item 4: a kill -9 of Redis took the stack down (workers exited, `up` stopped the
rest, its logging crashed, a SIGTERM-ignoring child survived `stop()`). These tests kill real
processes and wait for real outcomes, never a fixed time; every process they start is stopped
by conftest's finalizer even when they fail.
"""

from __future__ import annotations

import ast
import io
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import create_engine, text

from bot.processes.redis_server import EmbeddedRedis, find_redis_server
from bot.processes.supervisor import Supervisor
from sandbox.events import message_receive
from sandbox.sender import EventSender, SenderConfig
from sandbox.state import SANDBOX_ENCRYPT_KEY, SANDBOX_TENANT_KEY, SANDBOX_VERIFICATION_TOKEN
from tests import processes
from tests.helpers import wait_until
from tests.servers import free_port
from tests.stack import BridgeStack

ROOT = Path(__file__).resolve().parent.parent
RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _env() -> dict[str, str]:
    # marked as this test's, so conftest stops anything the supervisor would leave behind
    return {**os.environ, processes.MARK: processes._owner}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# -- the supervisor's logging ------------------------------------------------------------------


def reserved_extra_keys(path: Path) -> list[str]:
    """`extra={...}` keys a LogRecord already has: logging raises KeyError("Attempt to
    overwrite 'process' in LogRecord") for them, in whatever code path logs it."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.keyword) and node.arg == "extra" and isinstance(node.value, ast.Dict):
            for key in node.value.keys:
                if isinstance(key, ast.Constant) and key.value in RESERVED:
                    found.append(f"{path.relative_to(ROOT)}:{node.value.lineno} {key.value!r}")
    return found


def test_no_log_call_overwrites_a_logrecord_attribute():
    found = [hit for folder in ("bot", "jobs", "handlers", "sandbox")
             for path in sorted((ROOT / folder).rglob("*.py")) for hit in reserved_extra_keys(path)]
    assert found == []


# -- stop(): what ignores SIGTERM --------------------------------------------------------------

# ignores SIGTERM, and so does the grandchild it starts in its own process group
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c",
    "import signal, time\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\nwhile True: time.sleep(0.1)"])
print(f"ready {grandchild.pid}", flush=True)
while True:
    time.sleep(0.1)
"""


def test_stop_kills_a_child_that_ignores_sigterm_and_its_group():
    output = io.BytesIO()
    supervisor = Supervisor(output=output, pretty=False, grace_seconds=1.0)
    supervisor.add("stubborn", [sys.executable, "-c", STUBBORN], _env())
    supervisor.start()
    line = wait_until(lambda: [x for x in output.getvalue().splitlines() if x.startswith(b"ready ")],
                     30, "the child to start its grandchild")[0]
    child, grandchild = supervisor.children[0].process.pid, int(line.split()[1])
    started = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - started < 1.0 + 10  # the grace period, then SIGKILL
    assert not _alive(child), "the SIGTERM-ignoring child survived stop()"
    # SIGKILL went to its group; the kernel ends it asynchronously (slowly on a busy machine)
    wait_until(lambda: not _alive(grandchild), 15, "the SIGTERM-ignoring grandchild to die (SIGKILLed group)")


# -- restarts with backoff ---------------------------------------------------------------------

# notes each start in a file; exits 3 on its first `fails` starts, then lives until SIGTERM
FLAKY = """
import pathlib, signal, sys, time
starts = pathlib.Path(sys.argv[1])
with starts.open("a") as f:
    f.write(f"{time.monotonic()}\\n")
if len(starts.read_text().split()) <= int(sys.argv[2]):
    sys.exit(3)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("living", flush=True)
while True:
    time.sleep(0.05)
"""


def _supervise_until(supervisor: Supervisor, done: Callable[[], bool], timeout: float) -> int:
    """supervisor.run() here (it installs signal handlers: main thread), stopped from a thread
    once `done()` (or the timeout): never left running."""
    finished = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done() and not finished.is_set():
            time.sleep(0.05)
        supervisor.request_stop()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        return supervisor.run()
    finally:
        finished.set()
        watcher.join(timeout + 5)


def test_a_child_that_dies_is_restarted_with_backoff(tmp_path):
    starts = tmp_path / "starts"
    output = io.BytesIO()
    supervisor = Supervisor(output=output, pretty=False, grace_seconds=5, restart_first=0.3,
                            restart_cap=5, max_restarts=5)
    supervisor.add("flaky", [sys.executable, "-c", FLAKY, str(starts), "3"], _env())
    code = _supervise_until(supervisor, lambda: b"living" in output.getvalue(), timeout=60)

    times = [float(t) for t in starts.read_text().split()] if starts.exists() else []
    assert len(times) == 4, output.getvalue().decode()  # three failures, then it stays up
    assert code == 0  # stopped on request, not because a child died
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, delay in zip(gaps, (0.3, 0.6, 1.2), strict=True):  # doubling backoff
        assert gap >= delay * 0.95, gaps
    assert b"flaky exited with code 3; restarting in 0.6 s." in output.getvalue()


def test_a_child_that_keeps_failing_stops_everything(tmp_path):
    starts = tmp_path / "starts"
    output = io.BytesIO()
    supervisor = Supervisor(output=output, pretty=False, grace_seconds=5, restart_first=0.05,
                            max_restarts=2)
    supervisor.add("broken", [sys.executable, "-c", FLAKY, str(starts), "99"], _env())
    code = _supervise_until(supervisor, lambda: False, timeout=60)
    assert code == 3 and len(starts.read_text().split()) == 3  # first start + 2 restarts
    assert "✗ broken exited with code 3; stopping.".encode() in output.getvalue()


LIVES = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n" \
        "while True: time.sleep(0.05)\n"


def test_the_embedded_redis_is_restarted_with_its_data(tmp_path):
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    try:
        conn = Redis.from_url(redis.url)
        conn.config_set("appendfsync", "always")  # the key below is on disk before the kill
        conn.set("survives", "yes")
        pid = int(redis.pid_path.read_text())
        url = redis.url
        output = io.BytesIO()
        supervisor = Supervisor(output=output, pretty=False, grace_seconds=5, restart_first=0.2)
        supervisor.add("lives", [sys.executable, "-c", LIVES], _env())
        supervisor.watch("redis", redis.is_running, redis.start, every=0.2)
        os.kill(pid, signal.SIGKILL)

        def back() -> bool:
            try:
                return int(redis.pid_path.read_text()) != pid and redis.is_running()
            except (OSError, ValueError):
                return False

        _supervise_until(supervisor, back, timeout=60)
        assert back(), output.getvalue().decode()
        assert redis.url == url  # the same socket (or port) and data directory
        assert Redis.from_url(redis.url).get("survives") == b"yes"
        assert b"redis is not answering; restarting it." in output.getvalue()
    finally:
        redis.stop()
        if redis.pid_path.exists():
            os.kill(int(redis.pid_path.read_text()), signal.SIGKILL)


# -- the whole stack under a Redis blip --------------------------------------------------------

N_EVENTS = 500


class RedisProcess:
    """A redis-server on a loopback port, in the foreground (ours to kill -9 and start again
    with the same port and data directory)."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = find_redis_server()
        assert binary, "no redis-server"
        self.process = processes.spawn(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
            stdout=open(self.directory / "redis.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        wait_until(self.answers, 30, "redis-server to answer")

    def answers(self) -> bool:
        try:
            return bool(Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except Exception:  # not up (yet)
            return False

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.mark.slow
@pytest.mark.timeout(900)  # its own deadlines (below) fail first, saying where it stuck
def test_redis_killed_and_restarted_under_500_events_each_processed_once(tmp_path, sandbox):
    base_url, state = sandbox
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    database_url = f"sqlite:///{tmp_path / 'bridge.db'}"
    stack = BridgeStack(tmp_path, database_url, redis.url, base_url, cron=True, extra_env={
        "SWEEP_INTERVAL_SECONDS": "2", "LOG_LEVEL": "WARNING"}).start()
    sender = EventSender(SenderConfig(
        webhook_url=f"{stack.base_url}/webhook/event", encrypt_key=SANDBOX_ENCRYPT_KEY,
        verification_token=SANDBOX_VERIFICATION_TOKEN, redelivery_schedule=(0.5, 1, 2, 4, 8, 16),
        threads=16))
    engine = create_engine(database_url)
    messages: list[str] = []

    def send(count: int) -> None:
        for _ in range(count):
            i = len(messages)
            message = state.add_user_message(f"oc_chat_{i % 7}", f"ou_user_{i % 13}",
                                              json.dumps({"text": "/ping"}))
            doc = sender.envelope("im.message.receive_v1",
                                  message_receive(message, chat_type="p2p", tenant_key=SANDBOX_TENANT_KEY),
                                  app_id=state.config.app_id)
            messages.append(message.message_id)
            sender.send(doc, encrypted=i % 2 == 0)

    def stack_alive() -> None:
        dead = [p.args[-1] for p in stack.processes if p.poll() is not None]
        assert not dead, f"exited: {dead}\n{stack.log_text()[-3000:]}"

    def answered(n: int) -> Callable[[], bool]:
        def check() -> bool:
            stack_alive()
            return len(sender.attempts()) >= n
        return check

    def done() -> int:
        stack_alive()
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM event_receipts WHERE status = 'done'")).scalar()

    def receipts_state() -> str:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT status, job_id, count(*) FROM event_receipts WHERE status != 'done' "
                "GROUP BY status, job_id")).all()
        jobs = Redis.from_url(redis.url)
        return "; ".join(
            f"{n} {status} (job {job_id}: {jobs.hget(f'rq:job:{job_id}', 'status')})"
            for status, job_id, n in rows) + f"; sender idle: {sender.wait_idle(timeout=0)}"

    try:
        send(150)
        wait_until(answered(50), 120, "50 answers before the kill")
        redis.kill()  # ~100 events still in flight
        send(200)
        wait_until(answered(350), 120, "350 answers while Redis is down")
        assert not redis.answers()
        stack_alive()  # workers and cron waited the outage out
        redis.start()  # the same port and data directory
        send(150)
        assert sender.wait_idle(timeout=300), receipts_state()
        wait_until(lambda: done() == N_EVENTS, 300, "all 500 receipts done", interval=0.5,
                  state=receipts_state)

        statuses = [a.status for a in sender.attempts()]
        assert set(statuses) <= {200, 503}, {s: statuses.count(s) for s in set(statuses)}
        ok = {a.event_id for a in sender.attempts() if a.status == 200}
        assert len(ok) == N_EVENTS
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM event_receipts")).scalar() == N_EVENTS
        pongs: dict[str, int] = {}
        for m in state.bot_sent:
            pongs[m.parent_id] = pongs.get(m.parent_id, 0) + 1
        assert set(pongs) == set(messages) and set(pongs.values()) == {1}  # each exactly once
        stack_alive()
    finally:
        sender.close()
        stack.stop()
        engine.dispose()
