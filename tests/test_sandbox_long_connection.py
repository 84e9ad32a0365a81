"""The sandbox's long connection (issue 16, Feishu's side) against the real lark-oapi `ws.Client`.

Two SDK clients run for the whole module, each in its own process (tests/ws_client.py: the SDK's
event loop is a module-level global), pointed at a sandbox of this module's own in websocket
mode. Each test starts from the same knobs (pings every second, quick reconnects) with both
clients connected; the ones that cut a connection leave the SDK to reconnect on its own.
Refusals that the SDK would only log are checked with the SDK's own functions in-process
(`_get_conn_url`, `_parse_ws_conn_exception`) or with plain websockets connections.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from lark_oapi.ws.client import Client as SdkWsClient
from lark_oapi.ws.client import _parse_ws_conn_exception
from lark_oapi.ws.exception import ClientException, ServerException
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from sandbox.state import SANDBOX_APP_ID, SANDBOX_APP_SECRET, SandboxConfig, SandboxState
from sandbox.ws_knobs import KnobChanges
from tests import processes
from tests.helpers import running_sandbox

ROOT = Path(__file__).resolve().parents[1]
ACK_TIMEOUT = 1.5  # Feishu's is 3 s; shortened so re-sends show quickly
SCHEDULE = (0.2, 0.5, 1.0)
CLIENT_SETTINGS = {"ping_interval": 1, "reconnect_nonce": 1, "reconnect_interval": 1}


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, every: float = 0.02) -> Any:
    """Poll `condition` until it is truthy (returned) or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


class SdkClient:
    """One lark-oapi ws.Client in its own process; its reports (tests/ws_client.py) collected."""

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self.reports: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self.process = processes.spawn(
            [sys.executable, "-u", str(ROOT / "tests" / "ws_client.py"), "--domain", base_url,
             "--app-id", SANDBOX_APP_ID, "--app-secret", SANDBOX_APP_SECRET],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, name=f"ws-client-{name}", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                report = json.loads(line)
            except ValueError:
                report = {"kind": "raw", "text": line.rstrip()}
            with self._changed:
                self.reports.append(report)
        with self._changed:
            self.reports.append({"kind": "exited", "code": self.process.wait()})

    def mark(self) -> int:
        with self._changed:
            return len(self.reports)

    def since(self, mark: int, kind: str) -> list[dict[str, Any]]:
        with self._changed:
            return [r for r in self.reports[mark:] if r["kind"] == kind]

    def position(self, mark: int, kind: str, nth: int) -> int:
        """Where the `nth` (1-based) report of `kind` after `mark` is."""
        with self._changed:
            hits = [i for i in range(mark, len(self.reports)) if self.reports[i]["kind"] == kind]
        return hits[nth - 1]

    def event_ids(self, mark: int = 0) -> list[str]:
        return [r["event_id"] for r in self.since(mark, "event") + self.since(mark, "card")]

    @property
    def device_id(self) -> str | None:
        connected = self.since(0, "connected")
        return connected[-1]["device_id"] if connected else None

    def tail(self) -> str:
        with self._changed:
            return "\n".join(json.dumps(r, ensure_ascii=False) for r in self.reports[-15:])


@dataclass
class World:
    base: str
    state: SandboxState
    a: SdkClient
    b: SdkClient

    def knobs(self, **values: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.base}/sandbox/long-connection", json=values)
        assert response.status_code == 200, response.text
        return response.json()

    def view(self) -> dict[str, Any]:
        return httpx.get(f"{self.base}/sandbox/long-connection").json()

    def connection_of(self, client: SdkClient) -> dict[str, Any]:
        found = [c for c in self.view()["connections"] if c["device_id"] == client.device_id]
        assert found, f"client {client.name} has no open connection:\n{client.tail()}"
        return found[0]

    def send(self, event_type: str, event: dict[str, Any] | None = None) -> str:
        document = self.state.sender.envelope(event_type, event or {"n": 1}, app_id=SANDBOX_APP_ID)
        self.state.sender.send(document)
        return document["header"]["event_id"]


@pytest.fixture(scope="module")
def lc_sandbox() -> Iterator[tuple[str, SandboxState]]:
    config = SandboxConfig(event_mode="websocket", ws_ack_timeout=ACK_TIMEOUT, redelivery_schedule=SCHEDULE)
    with running_sandbox(config) as running:
        yield running


def _module_knobs(state: SandboxState) -> None:
    state.long_connection.reset_knobs()
    state.long_connection.apply(KnobChanges(settings=dict(CLIENT_SETTINGS)))
    state.event_mode = "websocket"


@pytest.fixture(scope="module")
def clients(lc_sandbox: tuple[str, SandboxState]) -> Iterator[tuple[SdkClient, SdkClient]]:
    base, state = lc_sandbox
    _module_knobs(state)
    with processes.owned_by("ws-clients") as owner:
        pair = (SdkClient("a", base), SdkClient("b", base))
    try:
        yield pair
    finally:
        processes.stop_owned(owner, grace=5)


@pytest.fixture
def lc(lc_sandbox: tuple[str, SandboxState], clients: tuple[SdkClient, SdkClient]) -> World:
    """Both clients connected, the module's knobs, no attempts logged."""
    base, state = lc_sandbox
    world = World(base, state, *clients)
    _module_knobs(state)
    for client in clients:
        try:
            wait_until(lambda c=client: c.device_id in {x["device_id"] for x in world.view()["connections"]},
                       timeout=45)
        except AssertionError:
            pytest.fail(f"client {client.name} is not connected:\n{client.tail()}")
    assert state.sender.wait_idle(30)
    state.sender.clear()
    return world


@pytest.fixture
def fresh() -> Iterator[tuple[str, SandboxState]]:
    """A sandbox of the test's own, in the default (webhook) mode, with no client."""
    with running_sandbox(SandboxConfig(redelivery_schedule=SCHEDULE, ws_ack_timeout=ACK_TIMEOUT)) as running:
        yield running


def discover(base: str, **body: Any) -> dict[str, Any]:
    return httpx.post(f"{base}/callback/ws/endpoint",
                      json=body or {"AppID": SANDBOX_APP_ID, "AppSecret": SANDBOX_APP_SECRET}).json()


def refusal_of(url: str) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(url, open_timeout=5).close()
    return refused.value


# -- discovery and the handshake -----------------------------------------------------------


def test_discovery_answers_a_fresh_ticket_and_feishus_default_client_settings(fresh):
    base, _ = fresh  # the default webhook mode: an app can connect before switching modes
    first, second = discover(base), discover(base)
    assert first["code"] == 0 and second["code"] == 0
    assert first["data"]["ClientConfig"] == {"ReconnectCount": -1, "ReconnectInterval": 120,
                                             "ReconnectNonce": 30, "PingInterval": 120}
    urls = [urlsplit(answer["data"]["URL"]) for answer in (first, second)]
    queries = [parse_qs(url.query) for url in urls]
    assert all(url.scheme == "ws" and url.hostname == "127.0.0.1" and url.path == "/ws/v2" for url in urls)
    assert queries[0]["device_id"] != queries[1]["device_id"]
    assert queries[0]["service_id"] == queries[1]["service_id"]
    assert int(queries[0]["service_id"][0]) > 0


def test_discovery_refuses_wrong_credentials_with_codes_the_sdk_does_not_retry(fresh):
    base, _ = fresh
    for app_id, secret, code in ((SANDBOX_APP_ID, "not-the-secret", 514),
                                 ("cli_unknown", SANDBOX_APP_SECRET, 1000040346)):
        with pytest.raises(ClientException) as refused:  # the SDK's own discovery call
            SdkWsClient(app_id, secret, domain=base)._get_conn_url()
        assert refused.value.code == code
    lowercase = discover(base, app_id=SANDBOX_APP_ID, app_secret=SANDBOX_APP_SECRET)
    assert lowercase["code"] == 514 and lowercase["data"] == {"URL": ""}


def test_the_handshake_refuses_an_unknown_or_reused_ticket(lc_sandbox):
    base, _ = lc_sandbox
    url = discover(base)["data"]["URL"]
    refused = refusal_of(url.replace("device_id=", "device_id=9"))
    assert refused.response.status_code == 401
    assert refused.response.headers["handshake-status"] == "514"
    assert refused.response.headers["handshake-autherrcode"] == "1000040348"
    with pytest.raises(ServerException):  # the SDK reconnects (with a new ticket) after this
        _parse_ws_conn_exception(refused)
    ws_connect(url, open_timeout=5).close()  # the ticket works once
    assert refusal_of(url).response.headers["handshake-autherrcode"] == "1000040348"
    reasons = [r["reason"] for r in httpx.get(f"{base}/sandbox/long-connection").json()["refusals"]]
    assert "unknown ticket" in reasons and "ticket already used" in reasons


def test_the_51st_connection_is_refused_with_the_limit_code_the_sdk_gives_up_on(lc: World):
    opened: list[ClientConnection] = []
    try:
        while len(lc.view()["connections"]) < 50:
            opened.append(ws_connect(discover(lc.base)["data"]["URL"], open_timeout=5))
        refused = refusal_of(discover(lc.base)["data"]["URL"])
        assert refused.response.headers["handshake-status"] == "514"
        assert refused.response.headers["handshake-autherrcode"] == "1000040350"
        with pytest.raises(ClientException) as stopped:  # lark-oapi: no more reconnects
            _parse_ws_conn_exception(refused)
        assert stopped.value.code == 514
        assert len(opened) == 48  # beside the module's two SDK clients
    finally:
        for connection in opened:
            connection.close()
    wait_until(lambda: len(lc.view()["connections"]) == 2)


# -- pings -------------------------------------------------------------------------------------


def test_pings_are_answered_and_a_pong_carries_a_changed_ping_interval(lc: World):
    mark = lc.a.mark()
    wait_until(lambda: len(lc.a.since(mark, "pong")) >= 2)
    conn = lc.connection_of(lc.a)
    assert conn["pongs"] >= conn["pings"] - 1 and conn["unanswered_pings"] == 0
    assert conn["client_config"]["PingInterval"] == 1

    marks = (lc.a.mark(), lc.b.mark())
    lc.knobs(ping_interval=2)
    for client, since in zip((lc.a, lc.b), marks, strict=True):
        wait_until(lambda c=client, m=since: {"kind": "config", "ping_interval": 2} in c.since(m, "config"))
    assert {c["client_config"]["PingInterval"] for c in lc.view()["connections"]} == {2}
    assert discover(lc.base)["data"]["ClientConfig"]["PingInterval"] == 2  # and new clients get it


def test_answer_pings_false_leaves_one_connections_pings_unanswered(lc: World):
    target, other = lc.connection_of(lc.a), lc.connection_of(lc.b)
    after = lc.knobs(answer_pings=False, connection=target["id"])
    mark = lc.a.mark()
    before = {c["id"]: c for c in after["connections"]}
    assert before[target["id"]]["answering_pings"] is False and before[other["id"]]["answering_pings"]
    assert after["silent_connections"] == [target["id"]]

    wait_until(lambda: lc.connection_of(lc.a)["pings"] >= before[target["id"]]["pings"] + 2)
    now = {c["id"]: c for c in lc.view()["connections"]}
    assert now[target["id"]]["pongs"] == before[target["id"]]["pongs"]
    assert now[target["id"]]["unanswered_pings"] >= 2
    wait_until(lambda: lc.connection_of(lc.b)["pongs"] > before[other["id"]]["pongs"])
    # The client's view: pings go out, no pong comes back (after the second new ping, so that
    # a pong for a ping answered just before the knob cannot count).
    wait_until(lambda: len(lc.a.since(mark, "ping")) >= 3)
    second_ping = lc.a.position(mark, "ping", 2)
    assert lc.a.since(second_ping, "pong") == [], "the silent connection answered a ping"


# -- delivering events --------------------------------------------------------------------


def test_an_event_and_a_chat_message_are_delivered_once_over_the_connection(lc: World):
    event_id = lc.send("sandbox.probe_v1")
    chat = httpx.post(f"{lc.base}/sandbox/chat", json={"text": "/ping", "encrypted": True}).json()
    assert lc.state.sender.wait_idle(10)
    attempts = {a.event_id: a for a in lc.state.sender.attempts()}
    assert set(attempts) == {event_id, chat["event_id"]}
    for attempt in attempts.values():
        assert (attempt.status, attempt.attempt, attempt.transport) == (200, 1, "websocket")
        assert not attempt.encrypted
    wait_until(lambda: {event_id, chat["event_id"]} <= set(lc.a.event_ids() + lc.b.event_ids()))
    seen = Counter(lc.a.event_ids() + lc.b.event_ids())
    assert seen[event_id] == 1 and seen[chat["event_id"]] == 1  # to one client, not broadcast
    chat_report = next(r for r in lc.a.since(0, "event") + lc.b.since(0, "event")
                       if r["event_id"] == chat["event_id"])
    assert chat_report["event_type"] == "im.message.receive_v1"  # plain JSON, though asked encrypted


def test_a_large_event_goes_in_parts_and_arrives_whole(lc: World):
    frames_before = sum(c["frames_out"] for c in lc.view()["connections"])
    event_id = lc.send("sandbox.probe_v1", {"text": "长" * 30000})  # ~90 KB: three parts
    assert lc.state.sender.wait_idle(10)
    assert [a.status for a in lc.state.sender.attempts()] == [200]
    wait_until(lambda: event_id in lc.a.event_ids() + lc.b.event_ids())
    assert sum(c["frames_out"] for c in lc.view()["connections"]) - frames_before >= 3


def test_a_card_callback_comes_as_an_event_frame_and_its_toast_is_the_answer(lc: World):
    card = {"elements": [{"tag": "action", "actions": [{"tag": "button", "value": {"action": "approve"}}]}]}
    message, _ = lc.state.add_bot_message(chat_id="oc_sandbox_default_chat", msg_type="interactive",
                                          content=json.dumps(card), uuid=None)
    answer = httpx.post(f"{lc.base}/sandbox/card-action",
                        json={"message_id": message.message_id, "value": {"action": "approve"}}).json()
    assert answer["webhook_status"] == 200 and answer["transport"] == "websocket"
    assert answer["answer"] == {"toast": {"type": "success", "content": "pressed approve"}}
    cards = lc.a.since(0, "card") + lc.b.since(0, "card")
    reports = [r for r in cards if r["event_id"] == answer["event_id"]]
    assert len(reports) == 1 and reports[0]["value"] == {"action": "approve"}


def test_two_hundred_events_are_spread_over_both_clients_each_delivered_once(lc: World):
    marks = (lc.a.mark(), lc.b.mark())
    sent = {lc.send("sandbox.probe_v1", {"n": n}) for n in range(200)}
    assert lc.state.sender.wait_idle(60)
    attempts = lc.state.sender.attempts()
    assert len(attempts) == 200 and {a.status for a in attempts} == {200}
    assert {a.event_id for a in attempts} == sent
    wait_until(lambda: len(lc.a.event_ids(marks[0])) + len(lc.b.event_ids(marks[1])) >= 200)
    got_a, got_b = lc.a.event_ids(marks[0]), lc.b.event_ids(marks[1])
    assert len(got_a) + len(got_b) == 200 and set(got_a) | set(got_b) == sent
    assert not set(got_a) & set(got_b)  # never broadcast
    by_connection = Counter(a.connection for a in attempts)
    assert by_connection[lc.connection_of(lc.a)["id"]] == len(got_a) >= 40
    assert by_connection[lc.connection_of(lc.b)["id"]] == len(got_b) >= 40


def test_an_event_not_acknowledged_in_time_is_sent_again(lc: World):
    lc.knobs(ack_delay=ACK_TIMEOUT + 0.5)  # each ack counts as arriving too late
    event_id = lc.send("sandbox.probe_v1")
    wait_until(lambda: lc.state.sender.attempts(), timeout=10)
    lc.knobs(ack_delay=0)
    assert lc.state.sender.wait_idle(20)
    attempts = lc.state.sender.attempts()
    assert attempts[0].error == "ack_timeout" and attempts[0].status is None
    assert attempts[-1].status == 200 and 2 <= len(attempts) <= 1 + len(SCHEDULE)
    assert {a.event_id for a in attempts} == {event_id}
    wait_until(lambda: (lc.a.event_ids() + lc.b.event_ids()).count(event_id) == len(attempts))  # duplicates
    wait_until(lambda: sum(c["late_acks"] for c in lc.view()["connections"]) >= 1, timeout=5)


def test_an_event_acknowledged_500_is_sent_again_on_the_schedule(lc: World):
    lc.send("sandbox.fails_v1")  # the client's handler raises: the SDK acknowledges 500
    assert lc.state.sender.wait_idle(20)
    attempts = lc.state.sender.attempts()
    assert [a.status for a in attempts] == [500] * (1 + len(SCHEDULE))
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert all(gap >= 0.9 * delay for gap, delay in zip(gaps, SCHEDULE, strict=True))


def test_a_dropped_connections_event_in_flight_goes_to_the_other_client(lc: World):
    lc.knobs(ack_delay=ACK_TIMEOUT - 0.5)  # keeps the event in flight long enough to cut it off
    before = {c["id"] for c in lc.view()["connections"]}
    event_id = lc.send("sandbox.probe_v1")
    busy = wait_until(lambda: [c for c in lc.view()["connections"] if c["in_flight"]], timeout=5)[0]
    dropped = lc.knobs(drop=busy["id"], ack_delay=0)["dropped"]
    assert dropped == [busy["id"]]
    assert lc.state.sender.wait_idle(20)
    attempts = lc.state.sender.attempts()
    assert (attempts[0].error, attempts[0].connection) == ("connection_lost", busy["id"])
    assert attempts[-1].status == 200 and {a.event_id for a in attempts} == {event_id}
    others = before - {busy["id"]}
    opened_since = {c["id"] for c in lc.view()["connections"]} - before  # the dropped client's return
    assert attempts[-1].connection in others | opened_since
    closed = {c["id"]: c for c in lc.view()["closed_connections"]}
    assert closed[busy["id"]]["close_reason"] == "dropped by the sandbox"


def test_with_no_client_connected_an_event_is_sent_again_then_given_up(fresh):
    base, state = fresh
    httpx.post(f"{base}/sandbox/long-connection", json={"event_mode": "websocket"}).raise_for_status()
    state.sender.send(state.sender.envelope("sandbox.probe_v1", {"n": 1}, app_id=SANDBOX_APP_ID))
    assert state.sender.wait_idle(10)
    assert [(a.error, a.transport) for a in state.sender.attempts()] == [("no_client", "websocket")] * 4
    assert httpx.get(f"{base}/sandbox").json()["event_mode"] == "websocket"
    state.reset()  # back to the configured mode
    assert state.event_mode == "webhook"


def test_the_knobs_are_validated(fresh):
    base, _ = fresh
    url = f"{base}/sandbox/long-connection"
    for body, fragment in (([], "JSON object"), ({"bogus": 1}, "unknown knob"),
                           ({"event_mode": "poll"}, "event_mode"), ({"ping_interval": 0}, "ping_interval"),
                           ({"ping_interval": True}, "ping_interval"), ({"ack_delay": -1}, "ack_delay"),
                           ({"answer_pings": "no"}, "answer_pings"),
                           ({"connection": "conn-1"}, "answer_pings"), ({"drop": ""}, "drop")):
        response = httpx.post(url, json=body)
        assert response.status_code == 400 and fragment in response.json()["error"], body
    missing = httpx.post(url, json={"drop": "conn-404"})
    assert missing.status_code == 404 and "conn-404" in missing.json()["error"]
    shown = httpx.post(url, json={"ping_interval": 5, "reconnect_nonce": 0, "ack_delay": 0.5}).json()
    assert (shown["ping_interval"], shown["reconnect_nonce"], shown["ack_delay"]) == (5, 0, 0.5)
    assert shown["event_mode"] == "webhook" and shown["connections"] == [] and shown["max_connections"] == 50
