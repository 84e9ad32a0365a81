"""Issue 16 end to end: events over Feishu's long connection, through real `listen` processes
(lark-oapi's client underneath), gunicorn, RQ workers and the sandbox's long-connection server.

Each test runs its own sandbox in websocket mode (its own re-send schedule), and waits on
conditions with generous deadlines; every process is stopped even when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import create_engine, text

from sandbox.events import message_receive
from sandbox.state import SANDBOX_TENANT_KEY, SandboxConfig, SandboxState
from tests import processes
from tests.helpers import running_sandbox, wait_until
from tests.stack import ROOT, BridgeStack

pytestmark = pytest.mark.slow

N_EVENTS = 1000


@pytest.fixture
def ws_sandbox() -> Iterator[tuple[str, SandboxState]]:
    """A sandbox delivering over the long connection, re-sending on a compressed schedule that
    still outlasts a listener's restart."""
    with running_sandbox(SandboxConfig(event_mode="websocket",
                                       redelivery_schedule=(0.5, 1, 2, 4, 8, 16, 30))) as running:
        yield running


def _open_connections(base_url: str) -> list[dict]:
    return httpx.get(f"{base_url}/sandbox/long-connection", timeout=10).json()["connections"]


def _knobs(base_url: str, **values) -> dict:
    answer = httpx.post(f"{base_url}/sandbox/long-connection", json=values, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _say(state: SandboxState, i: int) -> str:
    message = state.add_user_message(f"oc_chat_{i % 7}", f"ou_user_{i % 13}", json.dumps({"text": "/ping"}))
    doc = state.sender.envelope("im.message.receive_v1",
                                message_receive(message, chat_type="p2p", tenant_key=SANDBOX_TENANT_KEY),
                                app_id=state.config.app_id, tenant_key=SANDBOX_TENANT_KEY)
    state.sender.send(doc, encrypted=False)
    return message.message_id


def _pongs(state: SandboxState) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in list(state.bot_sent):
        if m.parent_id:
            counts[m.parent_id] = counts.get(m.parent_id, 0) + 1
    return counts


def _hold_events(listener, say: Callable[[], None], base_url: str) -> str:
    """Stop `listener` (SIGSTOP) and keep sending until its connection holds unacknowledged
    events; returns that connection's id. Without this the drop and the kill now and then hit a
    connection that had just acknowledged everything, and cost no delivery."""
    os.kill(listener.pid, signal.SIGSTOP)
    seen: dict[str, set[str]] = {}

    def holding() -> str | None:
        for _ in range(20):
            say()
        for conn in _open_connections(base_url):
            still = seen.get(conn["id"], set()) & set(conn["in_flight"])
            if len(still) >= 3:  # unacknowledged across two looks: the stopped listener's
                return conn["id"]
            seen[conn["id"]] = set(conn["in_flight"])
        return None

    return wait_until(holding, 60, "the stopped listener's connection to hold events", interval=0.2)


def test_a_silent_connection_is_replaced_within_two_ping_intervals(tmp_path, ws_sandbox, redis_url):
    """Also: a stalled endpoint discovery times out (the SDK's own call waits forever) and is
    retried; the metrics say what happened; SIGTERM stops the listener cleanly."""
    base_url, state = ws_sandbox
    ping = 4
    _knobs(base_url, ping_interval=ping)  # handed to the listener at discovery
    httpx.post(f"{base_url}/sandbox/faults", json={"stall": 1.0, "stall_seconds": 30}).raise_for_status()
    stack = BridgeStack(tmp_path, f"sqlite:///{tmp_path / 'bridge.db'}", redis_url, base_url,
                        workers=1, listeners=1,
                        extra_env={"LOG_LEVEL": "INFO", "WS_DISCOVERY_TIMEOUT_SECONDS": "1"}).start()
    try:
        wait_until(lambda: "cannot open the long connection" in stack.log_text(), 60, "discovery to time out")
        assert "Timeout" in stack.log_text()
        httpx.post(f"{base_url}/sandbox/faults", json={"stall": 0.0}).raise_for_status()
        [first] = wait_until(lambda: _open_connections(base_url), 60, "the listener to connect")
        wait_until(lambda: _open_connections(base_url)[0]["pongs"] >= 1, 30, "a ping answered")
        _knobs(base_url, answer_pings=False, connection=first["id"])
        silenced = time.monotonic()

        def replaced() -> dict | None:
            fresh = [c for c in _open_connections(base_url) if c["id"] != first["id"]]
            return fresh[0] if fresh else None

        second = wait_until(replaced, 10 * ping, "a new connection")
        took = time.monotonic() - silenced
        assert took < 2 * ping, f"replaced after {took:.1f} s; ping interval {ping} s"
        assert first["id"] not in {c["id"] for c in _open_connections(base_url)}  # the old one closed
        assert "long connection silent; replacing it" in stack.log_text()
        # and events flow over the new one
        asked = _say(state, 0)
        wait_until(lambda: _pongs(state).get(asked) == 1, 60, "the pong over the new connection")
        assert second["answering_pings"]

        metrics = httpx.get(f"{stack.base_url}/metrics", timeout=10).text
        assert "feishu_ws_connected 1.0" in metrics
        assert 'feishu_ws_reconnects_total{reason="silent"} 1.0' in metrics
        assert 'feishu_ws_reconnects_total{reason="connect_failed"}' in metrics
        assert "feishu_ws_last_frame_age_seconds" in metrics

        [listener] = stack.listener_processes()
        listener.send_signal(signal.SIGTERM)
        assert listener.wait(30) == 0
        wait_until(lambda: not _open_connections(base_url), 30, "the connection to close")
        assert "listener stopped" in stack.log_text()
    finally:
        stack.stop()


@pytest.mark.timeout(900)  # its own deadlines (below) fail first, saying what it waited for
def test_a_thousand_events_over_two_listeners_with_a_drop_and_a_kill_are_each_handled_once(
        tmp_path, ws_sandbox, redis_url):
    """The drop and the kill each hit a connection holding unacknowledged events (its listener
    stopped first), so both cost deliveries that must be sent again and handled once.

    cron runs, as in every deployment: a listener killed after committing a batch of receipts
    but before queuing its job leaves them for the sweeper (the re-delivery finds them recorded).
    Without it such a receipt waited forever (CI, stop 22: 999 of 1000 done)."""
    base_url, state = ws_sandbox
    database_url = f"sqlite:///{tmp_path / 'bridge.db'}"
    stack = BridgeStack(tmp_path, database_url, redis_url, base_url, workers=2, listeners=2, cron=True,
                        extra_env={"SWEEP_INTERVAL_SECONDS": "2"}).start()
    engine = create_engine(database_url)

    def done() -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM event_receipts WHERE status = 'done'")).scalar()

    try:
        wait_until(lambda: len(_open_connections(base_url)) == 2, 60, "both listeners to connect")
        messages: list[str] = []

        def say() -> None:
            messages.append(_say(state, len(messages)))
            time.sleep(0.002)

        dropped = killed = None
        while len(messages) < N_EVENTS:  # (holding events below sends some more)
            say()
            if dropped is None and len(messages) >= 300:  # a connection dropped with events on it
                frozen = stack.listener_processes()[1]
                held = _hold_events(frozen, say, base_url)
                [dropped] = _knobs(base_url, drop=held)["dropped"]
                os.kill(frozen.pid, signal.SIGCONT)
            if killed is None and len(messages) >= 600:  # a listener killed with events on it
                victim = stack.listener_processes()[0]
                killed = _hold_events(victim, say, base_url)
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait(10)
                stack.start_listener()
        assert state.sender.wait_idle(timeout=300)
        wait_until(lambda: done() == len(messages), 300, "all receipts done", interval=0.5)

        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM event_receipts")).scalar() == len(messages)
        pongs = _pongs(state)
        assert set(pongs) == set(messages) and set(pongs.values()) == {1}  # each handled exactly once
        attempts = state.sender.attempts()
        acked = {a.event_id for a in attempts if a.status == 200}
        assert len(acked) == len(messages)
        lost_on = {a.connection for a in attempts if a.status != 200}
        assert {dropped, killed} <= lost_on, "the drop and the kill each cost deliveries"
        spread = {a.connection for a in attempts if a.status == 200}
        assert len(spread) >= 3, spread  # two listeners, one of them reconnected, one restarted
        assert dropped not in {c["id"] for c in _open_connections(base_url)}
    finally:
        stack.stop()
        engine.dispose()


def test_a_refused_connection_is_logged_and_retried_not_fatal(tmp_path, ws_sandbox, redis_url):
    """Feishu refuses the app (here a wrong secret): the listener says so and keeps trying with
    backoff — the SDK would raise, and a crash-looping process hides the reason."""
    base_url, _ = ws_sandbox
    # the web app reads the metrics directory a standalone `listen` picks for itself (var/metrics):
    # its metrics must reach /metrics with no PROMETHEUS_MULTIPROC_DIR set for it (as in a Procfile)
    stack = BridgeStack(tmp_path, f"sqlite:///{tmp_path / 'bridge.db'}", redis_url, base_url, workers=0,
                        extra_env={"FEISHU_APP_SECRET": "not-the-secret",
                                   "PROMETHEUS_MULTIPROC_DIR": str((tmp_path / "var" / "metrics").resolve())})
    stack.start()
    env = {k: v for k, v in stack.env().items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with open(tmp_path / "stack.log", "ab") as log:
        stack.processes.append(processes.spawn([sys.executable, "-m", "bot.cli", "listen"], cwd=ROOT,
                                               env={**env, "FEISHU_EVENT_MODE": "websocket"},
                                               stdout=log, stderr=log))
    try:
        wait_until(lambda: stack.log_text().count("Feishu refused the long connection") >= 2, 60,
                  "two refusals")
        assert stack.listener_processes(), "the listener exited"
        assert "not-the-secret" not in stack.log_text()
        metrics = httpx.get(f"{stack.base_url}/metrics", timeout=10).text
        assert 'feishu_ws_reconnects_total{reason="refused"}' in metrics
    finally:
        stack.stop()
