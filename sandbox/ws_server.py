"""Feishu's side of the long connection (长连接, issue 16): tickets, the WebSocket server, and
cluster delivery of events.

What it holds to (sources and verification status in docs/sandbox.md, "Long connection"):

- A client first asks `POST /callback/ws/endpoint` (sandbox/products/ws_endpoint.py), which calls
  `issue_endpoint`: a fresh device_id and single-use ticket in the URL it answers. The handshake
  refuses an unknown, reused or altered ticket, and a connection beyond the app's 50, with the
  `handshake-status` / `handshake-msg` / `handshake-autherrcode` headers lark-oapi reads.
- Pings are answered with pongs; a pong carries the ClientConfig again when a knob changed it.
- Each event goes to ONE open connection chosen at random (cluster mode, never broadcast), as
  frames from sandbox/ws_frames.py (split above 32 KiB). No ack with code 200 within the ack
  timeout (Feishu: 3 s) is a failed attempt; the sender (sandbox/sender.py) re-sends it on its
  schedule, again to a connection chosen at random.
- Faults (sandbox/ws_knobs.py): connections that fall silent (no pongs, no WebSocket-level pongs,
  no events, acks ignored: a connection that died without either side closing it), acks treated
  as late, connections aborted without a close frame.

The server runs its own asyncio loop in a thread, started on first use: the request threads of
the Flask app talk to it through `run_coroutine_threadsafe`. Connection state is touched only on
that loop; knobs and tickets, which request threads change, are behind a lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import logging
import random
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.http11 import Request, Response

from sandbox.ws_knobs import ClientSettings, KnobChanges

log = logging.getLogger(__name__)

WS_PATH = "/ws/v2"  # Feishu's: wss://msg-frontier.feishu.cn/ws/v2?…
SERVICE_ID = 33554678  # the service_id seen in Feishu's URLs (docs/sandbox.md)
MAX_CONNECTIONS = 50  # per app (Feishu's doc)
# Handshake refusals. lark-oapi (ws/const.py, `_parse_ws_conn_exception`) raises ClientException
# — no more retries — for status 514 with autherrcode EXCEED_CONN_LIMIT, ServerException (it
# reconnects) for 514 with any other autherrcode.
AUTH_FAILED = 514
TICKET_INVALID = 1000040348  # seen with a reused ticket: "auth resp code error"
EXCEED_CONN_LIMIT = 1000040350
REFUSAL_HTTP_STATUS = 401
HANDSHAKE_GRACE = 10.0  # seconds a handshake may hold a connection slot before it opens

T = TypeVar("T")


def _frames() -> ModuleType:
    """The frame codec, imported when first needed: it loads lark-oapi's generated protobuf
    module and with it the whole SDK (seconds), which a sandbox that never opens a long
    connection should not pay for."""
    from sandbox import ws_frames

    return ws_frames


@dataclass(frozen=True)
class Delivery:
    """One attempt to push an event over the long connection, for the sender's log."""

    status: int | None  # the ack's code (200: handled; 500: the handler raised); None: no ack
    error: str | None  # "ack_timeout" | "no_client" | "connection_lost"
    answer: str | None  # JSON text of the ack's decoded data: a card callback's toast / card
    connection: str | None  # the connection the event went to
    latency_ms: float


class ConnectionLost(Exception):
    """The connection an event was waiting on closed before its ack arrived."""


@dataclass
class _Ticket:
    device_id: str
    ticket: str
    access_key: str
    service_id: int
    client_config: dict[str, int]
    used: bool = False


@dataclass
class Connection:
    """One client's connection, from its handshake on; counters are for tests and the knobs view."""

    id: str
    device_id: str
    service_id: int
    ws: ServerConnection
    client_config: dict[str, int]  # what this client was last told (discovery, then pongs)
    accepted_at: float = field(default_factory=time.monotonic)
    opened: bool = False
    connected_at: float | None = None
    frames_in: int = 0
    frames_out: int = 0
    pings: int = 0
    pongs: int = 0
    unanswered_pings: int = 0
    last_ping_at: float | None = None
    events_out: int = 0
    acks_in: int = 0
    late_acks: int = 0  # acks for an attempt already given up (timed out) or unknown
    bad_frames: int = 0
    dropped: bool = False
    waiting: dict[str, asyncio.Future] = field(default_factory=dict)  # message_id → ack

    def describe(self, silent: bool) -> dict[str, Any]:
        return {
            "id": self.id, "device_id": self.device_id, "service_id": self.service_id,
            "connected_at": self.connected_at, "frames_in": self.frames_in, "frames_out": self.frames_out,
            "pings": self.pings, "pongs": self.pongs, "unanswered_pings": self.unanswered_pings,
            "last_ping_at": self.last_ping_at, "events_out": self.events_out, "acks_in": self.acks_in,
            "late_acks": self.late_acks, "bad_frames": self.bad_frames, "in_flight": sorted(self.waiting),
            "answering_pings": not silent, "client_config": dict(self.client_config),
        }


class LongConnectionServer:
    """Feishu's long-connection endpoint for the sandbox's one app."""

    def __init__(self, *, rng: random.Random, ack_timeout: float = 3.0, host: str = "127.0.0.1",
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.ack_timeout = ack_timeout
        self.max_connections = max_connections
        self.port: int | None = None
        self._host = host
        self._rng = rng
        self._lock = threading.RLock()  # knobs, tickets, refusals, the random source
        self._settings = ClientSettings()
        self._answer_pings = True
        self._silent: set[str] = set()
        self._ack_delay = 0.0
        self._tickets: dict[str, _Ticket] = {}
        self._refusals: deque[dict[str, Any]] = deque(maxlen=200)
        self._connections: dict[str, Connection] = {}  # on the loop only
        self._handshaking: dict[ServerConnection, Connection] = {}
        self._closed_log: deque[dict[str, Any]] = deque(maxlen=200)
        self._ids = itertools.count(1)
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self) -> int:
        """Listen (once; later calls return the port). RuntimeError after `close`."""
        with self._start_lock:
            if self._loop is not None and self.port is not None:
                return self.port
            if self._stopped:
                raise RuntimeError("the long-connection server was closed")
            _frames()  # pay for the SDK import here, not on the loop
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="sandbox-long-connection", daemon=True)
            thread.start()
            server = asyncio.run_coroutine_threadsafe(self._listen(), loop).result(timeout=10)
            self._loop, self._thread, self._server = loop, thread, server
            self.port = server.sockets[0].getsockname()[1]
            log.info("long-connection server listening", extra={"port": self.port})
            return self.port

    async def _listen(self) -> Server:
        # No WebSocket-level pings from the server: Feishu's keepalive is the client's own
        # ping frame. No compression: the frames are small protobuf messages.
        return await serve(self._serve_connection, self._host, 0, process_request=self._admit,
                           ping_interval=None, compression=None)

    def close(self) -> None:
        """Close every connection (1001 going away), stop the loop; idempotent."""
        with self._start_lock:
            loop, thread, server = self._loop, self._thread, self._server
            self._loop, self._stopped = None, True
        if loop is None or thread is None or server is None:
            return

        async def shutdown() -> None:
            server.close()
            await server.wait_closed()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=15)
        except (concurrent.futures.TimeoutError, RuntimeError):
            log.warning("long-connection server did not shut down in time")
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            if not thread.is_alive():
                loop.close()

    def _in_loop(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the server's loop (where connection state lives) and wait for it; called
        directly when the server is not running."""
        loop = self._loop
        if loop is None:
            return fn()

        async def call() -> T:
            return fn()

        try:
            return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=10)
        except RuntimeError:  # closed meanwhile
            return fn()

    # -- discovery and the handshake --------------------------------------------------

    def issue_endpoint(self) -> dict[str, Any]:
        """The `data` of a discovery answer: a URL with a fresh device_id and single-use ticket,
        and the client settings now in force."""
        port = self.start()
        with self._lock:
            ticket = _Ticket(device_id=str(self._rng.randrange(10**18, 10**19)), ticket=self._new_id(),
                             access_key=f"{self._rng.getrandbits(128):032x}", service_id=SERVICE_ID,
                             client_config=self._settings.client_config())
            self._tickets[ticket.device_id] = ticket
        query = urlencode({"device_id": ticket.device_id, "access_key": ticket.access_key,
                           "service_id": ticket.service_id, "ticket": ticket.ticket})
        return {"URL": f"ws://{self._host}:{port}{WS_PATH}?{query}",
                "ClientConfig": dict(ticket.client_config)}

    def _admit(self, ws: ServerConnection, request: Request) -> Response | None:
        """websockets' process_request: None lets the handshake go on; a Response refuses it."""
        url = urlsplit(request.path)
        if url.path != WS_PATH:
            return ws.respond(404, "404 page not found\n")
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        with self._lock:
            ticket = self._tickets.get(query.get("device_id", ""))
            if ticket is None or ticket.used or query.get("ticket") != ticket.ticket \
                    or query.get("access_key") != ticket.access_key \
                    or query.get("service_id") != str(ticket.service_id):
                reason = "ticket already used" if ticket is not None and ticket.used else "unknown ticket"
                return self._refuse(ws, query, TICKET_INVALID, "auth resp code error", reason)
            self._forget_stale_handshakes()
            if len(self._connections) >= self.max_connections:
                return self._refuse(ws, query, EXCEED_CONN_LIMIT, "exceed conn limit",
                                    f"{self.max_connections} connections already open")
            ticket.used = True
            conn = Connection(f"conn-{next(self._ids)}", ticket.device_id, ticket.service_id, ws,
                              dict(ticket.client_config))
        self._connections[conn.id] = conn  # holds a slot from now on: the limit counts it
        self._handshaking[ws] = conn
        self._muffle_protocol_pongs(conn)
        return None

    def _refuse(self, ws: ServerConnection, query: dict[str, str], autherrcode: int, msg: str,
                reason: str) -> Response:
        self._refusals.append({"at": time.time(), "device_id": query.get("device_id"),
                               "autherrcode": autherrcode, "reason": reason})
        response = ws.respond(REFUSAL_HTTP_STATUS, f"{msg}\n")
        response.headers["handshake-status"] = str(AUTH_FAILED)
        response.headers["handshake-msg"] = msg
        response.headers["handshake-autherrcode"] = str(autherrcode)
        return response

    def _forget_stale_handshakes(self) -> None:
        """Free the slots of handshakes that never completed (the client went away mid-way)."""
        now = time.monotonic()
        for ws, conn in list(self._handshaking.items()):
            if now - conn.accepted_at > HANDSHAKE_GRACE:
                self._handshaking.pop(ws, None)
                self._connections.pop(conn.id, None)

    def _muffle_protocol_pongs(self, conn: Connection) -> None:
        """A silent connection answers no WebSocket-level ping either (the websockets library
        would answer them on its own): lark-oapi's websockets client pings every 20 s and gives
        up after 20 s more, which is how a client notices a connection that really died."""
        protocol = conn.ws.protocol
        send_frame = protocol.send_frame

        def send_unless_muffled(frame: WsFrame) -> None:
            if frame.opcode is Opcode.PONG and self._is_silent(conn):
                return
            send_frame(frame)

        protocol.send_frame = send_unless_muffled  # type: ignore[method-assign]

    # -- a connection's life -------------------------------------------------------------

    async def _serve_connection(self, ws: ServerConnection) -> None:
        conn = self._handshaking.pop(ws, None)
        if conn is None:
            return
        conn.opened, conn.connected_at = True, time.time()
        reason = "closed by the client"
        try:
            async for message in ws:
                await self._receive(conn, message)
        except ConnectionClosed:
            reason = "lost"
        finally:
            if conn.dropped:
                reason = "dropped by the sandbox"
            elif self._stopped:
                reason = "server closed"
            self._connections.pop(conn.id, None)
            for waiter in conn.waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionLost(conn.id))
            silent = self._is_silent(conn)
            with self._lock:
                self._silent.discard(conn.id)
            self._closed_log.append({**conn.describe(silent), "closed_at": time.time(),
                                     "close_reason": reason})

    async def _receive(self, conn: Connection, message: bytes | str) -> None:
        frames = _frames()
        conn.frames_in += 1
        try:
            if isinstance(message, str):
                raise frames.FrameError("a text message")
            frame = frames.parse(message)
            if frame.method == frames.CONTROL:
                if frames.header(frame, "type") == "ping":
                    await self._answer_ping(conn, frame.service, message)
                return
            if self._is_silent(conn):
                return  # the path back to Feishu is dead: the ack never arrives
            ack = frames.ack(message)
        except frames.FrameError:
            conn.bad_frames += 1
            return
        if ack is None:
            return
        conn.acks_in += 1
        waiter = conn.waiting.get(ack.message_id)
        if waiter is None or waiter.done():
            conn.late_acks += 1
        elif self._ack_delay > 0:
            asyncio.get_running_loop().call_later(self._ack_delay, self._settle, conn, waiter, ack)
        else:
            self._settle(conn, waiter, ack)

    @staticmethod
    def _settle(conn: Connection, waiter: asyncio.Future, ack: Any) -> None:
        if waiter.done():
            conn.late_acks += 1  # its attempt timed out (or its connection closed) meanwhile
        else:
            waiter.set_result(ack)

    async def _answer_ping(self, conn: Connection, service: int, ping: bytes) -> None:
        conn.pings += 1
        conn.last_ping_at = time.time()
        if self._is_silent(conn):
            conn.unanswered_pings += 1
            return
        if service != conn.service_id:
            conn.bad_frames += 1  # a ping for another service: not this connection's
            return
        with self._lock:
            current = self._settings.client_config()
        changed = current if current != conn.client_config else None
        pong = _frames().pong(ping, changed)
        await conn.ws.send(pong)
        conn.frames_out += 1
        conn.pongs += 1
        if changed:
            conn.client_config = changed

    def _is_silent(self, conn: Connection) -> bool:
        return not self._answer_pings or conn.id in self._silent

    # -- delivering events -------------------------------------------------------------

    def push(self, payload: bytes) -> concurrent.futures.Future[Delivery]:
        """Start one delivery attempt of an event (its JSON bytes); the future's result says how
        it went. Never blocks: with no server running, the attempt fails at once (no_client)."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                return asyncio.run_coroutine_threadsafe(self._deliver(payload), loop)
        done: concurrent.futures.Future[Delivery] = concurrent.futures.Future()
        done.set_result(Delivery(None, "no_client", None, None, 0.0))
        return done

    async def _deliver(self, payload: bytes) -> Delivery:
        started = time.perf_counter()

        def outcome(status: int | None, error: str | None, conn: Connection | None,
                    answer: str | None = None) -> Delivery:
            return Delivery(status, error, answer, conn.id if conn else None,
                            round((time.perf_counter() - started) * 1000, 3))

        candidates = [c for c in self._connections.values() if c.opened]
        if not candidates:
            return outcome(None, "no_client", None)
        with self._lock:  # cluster mode: one client at random, never all of them
            conn = self._rng.choice(candidates)
            message_id, trace_id = self._new_id(), self._new_id()
        waiter: asyncio.Future = asyncio.get_running_loop().create_future()
        conn.waiting[message_id] = waiter
        try:
            if not self._is_silent(conn):  # sent into a dead connection: it never arrives
                for frame in _frames().data_frames("event", message_id, trace_id, payload, conn.service_id):
                    await conn.ws.send(frame)
                    conn.frames_out += 1
            conn.events_out += 1
            remaining = self.ack_timeout - (time.perf_counter() - started)
            ack = await asyncio.wait_for(waiter, max(0.0, remaining))
        except TimeoutError:
            return outcome(None, "ack_timeout", conn)
        except (ConnectionLost, ConnectionClosed):
            return outcome(None, "connection_lost", conn)
        finally:
            conn.waiting.pop(message_id, None)
        answer = None if ack.answer is None else json.dumps(ack.answer, ensure_ascii=False)
        return outcome(ack.code, None, conn, answer)

    def _new_id(self) -> str:
        with self._lock:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # -- knobs and inspection ---------------------------------------------------------

    def apply(self, changes: KnobChanges) -> list[str]:
        """Apply knob changes (settings reach connected clients in their next pong); the ids of
        the connections dropped. LookupError names a connection that is not open."""
        open_ids = set(self._in_loop(lambda: [c.id for c in self._connections.values() if c.opened]))
        for named in (changes.connection, changes.drop):
            if named is not None and named not in ("any", "all") and named not in open_ids:
                raise LookupError(f"no open connection {named!r}; open: {sorted(open_ids)}")
        if changes.connection in ("any", "all"):
            raise LookupError("connection must name one connection (answer_pings without it applies to all)")
        with self._lock:
            for name, value in changes.settings.items():
                setattr(self._settings, name, value)
            if changes.answer_pings is not None:
                if changes.connection is None:
                    self._answer_pings = changes.answer_pings
                    self._silent.clear()
                elif changes.answer_pings:
                    self._silent.discard(changes.connection)
                else:
                    self._silent.add(changes.connection)
            if changes.ack_delay is not None:
                self._ack_delay = changes.ack_delay
        if changes.drop is None:
            return []
        which = changes.drop
        return self._in_loop(lambda: self._drop(which))

    def _drop(self, which: str) -> list[str]:
        open_now = [c for c in self._connections.values() if c.opened]
        if which == "all":
            targets = open_now
        elif which == "any":
            with self._lock:
                targets = [self._rng.choice(open_now)] if open_now else []
        else:
            targets = [c for c in open_now if c.id == which]
        for conn in targets:
            _abort(conn)
        return [c.id for c in targets]

    def reset_knobs(self) -> None:
        """Back to Feishu's defaults, every connection answering (between test cases)."""
        with self._lock:
            self._settings = ClientSettings()
            self._answer_pings, self._ack_delay = True, 0.0
            self._silent.clear()
            self._refusals.clear()
        self._in_loop(self._closed_log.clear)

    def snapshot(self) -> dict[str, Any]:
        """Connections (open, and the last closed ones), knob values, handshake refusals."""
        def live() -> dict[str, list[dict[str, Any]]]:
            return {"connections": [c.describe(self._is_silent(c)) for c in self._connections.values()
                                    if c.opened],
                    "closed_connections": list(self._closed_log)}

        state = self._in_loop(live)
        with self._lock:
            settings = vars(self._settings).copy()
            return {
                "running": self.running, "port": self.port, "ack_timeout": self.ack_timeout,
                "max_connections": self.max_connections, **settings,
                "answer_pings": self._answer_pings, "silent_connections": sorted(self._silent),
                "ack_delay": self._ack_delay, "tickets_issued": len(self._tickets),
                "refusals": list(self._refusals), **state,
            }


def _abort(conn: Connection) -> None:
    """Cut the TCP connection with no close frame (SO_LINGER 0: the peer sees a reset)."""
    conn.dropped = True
    transport = conn.ws.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
