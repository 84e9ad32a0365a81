"""Feishu's long connection (长连接), kept alive: lark-oapi's client with what it lacks.

lark-oapi 1.7.5's `lark.ws.Client` speaks the protocol (protobuf frames, pings, parts, the
acknowledgement frame) but, as its issue tracker and docs/sandbox.md record, its endpoint
discovery has no timeout (a reconnect hung for days, #169), it never notices a connection that
went silent, it cannot be stopped (#144), and it handles each event on its event loop, so a
handler that waits — ours waits for the receipt to be committed — holds up pings and every other
event. `LongConnection` keeps the SDK's frame handling and replaces the lifecycle around it:

* discovery with a timeout, off the event loop;
* any frame counts as a sign of life; a connection quiet for `liveness_intervals` ping intervals
  is dropped and dialled again (keepalive.py), with jittered exponential backoff;
* events are handed to a thread pool, so many are recorded in one group commit while the loop
  keeps answering; the acknowledgement goes back only once `on_payload` has returned, i.e. after
  the receipt is durable;
* `stop()` stops taking frames, lets in-flight events finish and closes the connection.

The SDK keeps its event loop in a module-level global and schedules its own tasks on it, so the
connection runs on that loop, in a process of its own (`feishu-bridge listen`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlparse

import requests
import websockets
from lark_oapi.core.enum import LogLevel
from lark_oapi.core.json import JSON
from lark_oapi.ws import client as sdk
from lark_oapi.ws.const import (
    DEVICE_ID,
    GEN_ENDPOINT_URI,
    HEADER_BIZ_RT,
    HEADER_MESSAGE_ID,
    HEADER_SEQ,
    HEADER_SUM,
    HEADER_TYPE,
    INTERNAL_ERROR,
    OK,
    SERVICE_ID,
    SYSTEM_BUSY,
)
from lark_oapi.ws.exception import ClientException, ServerException
from lark_oapi.ws.model import EndpointResp, Response
from lark_oapi.ws.pb.pbbp2_pb2 import Frame
from websockets.exceptions import InvalidHandshake

from bot.intake.accept import Acknowledgement
from bot.intake.keepalive import check_every, is_silent, reconnect_delay
from bot.metrics import WS_CONNECTED, WS_LAST_FRAME_AGE, WS_RECONNECTS

log = logging.getLogger(__name__)

DRAIN_SECONDS = 5.0  # on stop, in-flight events get this long to be recorded and acknowledged


OnPayload = Callable[[bytes], Acknowledgement]  # runs on a pool thread; may block


class LongConnection(sdk.Client):
    def __init__(self, app_id: str, app_secret: str, domain: str, on_payload: OnPayload, *,
                 discovery_timeout: float = 10.0, liveness_intervals: float = 1.5,
                 reconnect_cap: float = 60.0, threads: int = 16,
                 rng: random.Random | None = None) -> None:
        # WARNING: the SDK's own INFO lines print the connection URL, whose query holds the
        # connection's access key and ticket (masked anyway by bot.logs, like every URL credential).
        super().__init__(app_id, app_secret, domain=domain, auto_reconnect=False, log_level=LogLevel.WARNING)
        self._on_payload = on_payload
        self._discovery_timeout = discovery_timeout
        self._liveness_intervals = liveness_intervals
        self._reconnect_cap = reconnect_cap
        self._rng = rng or random.Random()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ws-intake")
        self._in_flight: set[asyncio.Task] = set()
        self._last_frame_at = time.monotonic()
        self._stopping: asyncio.Event | None = None
        self._lost: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = threading.Event()  # a stop that comes before `run()` has a loop
        self._opened_at = 0.0
        self.connections = 0  # successful connects so far (tests and the status line read it)

    # -- lifecycle ---------------------------------------------------------------------------

    def run_forever(self) -> None:
        """Connect and stay connected until `stop()`; runs the SDK's loop in this thread."""
        asyncio.set_event_loop(sdk.loop)
        sdk.loop.run_until_complete(self.run())

    def stop(self) -> None:
        """Thread- and signal-safe: ask `run()` to finish."""
        self._stop_requested.set()
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping, self._lost = asyncio.Event(), asyncio.Event()
        if self._stop_requested.is_set():
            self._stopping.set()
        failures = 0
        try:
            while not self._stopping.is_set():
                opened = self.connections
                reason = await self._connect_and_serve()
                if reason == "stopped":
                    break
                if self.connections > opened and time.monotonic() - self._opened_at >= self._ping_interval:
                    # it served a while, then was lost: dial back quickly, not after old failures
                    # (one closed at once, e.g. refused after the handshake, keeps backing off)
                    failures = 0
                WS_RECONNECTS.labels(reason).inc()
                delay = reconnect_delay(failures, self._reconnect_cap, self._rng)
                failures += 1
                log.warning("long connection lost; reconnecting",
                            extra={"reason": reason, "delay_s": round(delay, 2)})
                await self._back_off(delay)
        finally:
            WS_CONNECTED.set(0)
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _back_off(self, delay: float) -> None:
        """Wait `delay` seconds (or until stopped), keeping the frame-age gauge moving: a listener
        that cannot connect is exactly when its age matters."""
        assert self._stopping is not None
        until = time.monotonic() + delay
        while (left := until - time.monotonic()) > 0 and not self._stopping.is_set():
            WS_LAST_FRAME_AGE.set(time.monotonic() - self._last_frame_at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), min(left, 5.0))

    async def _connect_and_serve(self) -> str:
        """One connection's life; returns why it ended (a reconnect reason, or "stopped")."""
        try:
            await self._dial()
        except ClientException as exc:  # Feishu refused us: credentials, 50-connection limit
            log.error("Feishu refused the long connection", extra={"error": str(exc)})
            return "refused"
        except Exception as exc:  # network, timeout, a server error: worth trying again
            log.warning("cannot open the long connection", extra={"error": f"{type(exc).__name__}: {exc}"})
            return "connect_failed"
        self.connections += 1
        self._opened_at = time.monotonic()
        WS_CONNECTED.set(1)
        log.info("long connection open", extra={"conn_id": self._conn_id, "ping_s": self._ping_interval})
        receiver = asyncio.create_task(self._receive_frames())
        pinger = asyncio.create_task(self._ping_forever())
        reason = "stopped"
        try:
            reason = await self._watch()
            return reason
        finally:
            WS_CONNECTED.set(0)
            receiver.cancel()
            pinger.cancel()
            if reason == "stopped":
                await self._drain()
            else:  # a dead peer would hold a graceful close (and the SDK's write lock) for seconds
                with contextlib.suppress(Exception):
                    self._conn.transport.abort()
            await self._disconnect()

    async def _watch(self) -> str:
        assert self._stopping is not None and self._lost is not None
        while True:
            if self._stopping.is_set():
                return "stopped"
            if self._lost.is_set():
                return "closed"
            now = time.monotonic()
            WS_LAST_FRAME_AGE.set(now - self._last_frame_at)
            if is_silent(self._last_frame_at, now, self._ping_interval, self._liveness_intervals):
                quiet = round(now - self._last_frame_at, 1)
                log.warning("long connection silent; replacing it",
                            extra={"quiet_s": quiet, "ping_s": self._ping_interval})
                return "silent"
            waits = [asyncio.ensure_future(self._stopping.wait()), asyncio.ensure_future(self._lost.wait())]
            await asyncio.wait(waits, timeout=check_every(self._ping_interval),
                               return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()

    async def _drain(self) -> None:
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=DRAIN_SECONDS)

    # -- connecting ----------------------------------------------------------------------------

    async def _dial(self) -> None:
        assert self._lost is not None
        url = await asyncio.wait_for(self._loop.run_in_executor(None, self._get_conn_url),
                                     self._discovery_timeout + 1)
        query = parse_qs(urlparse(url).query)
        conn_id, service_id = query[DEVICE_ID][0], query[SERVICE_ID][0]  # before a socket is open
        try:
            conn = await asyncio.wait_for(
                websockets.connect(url, **sdk._ws_connect_kwargs(self._connection_headers)),
                self._discovery_timeout)
        except InvalidHandshake as exc:
            sdk._parse_ws_conn_exception(exc)  # raises Feishu's refusal as Client/ServerException
            raise
        self._conn, self._conn_url = conn, url
        self._conn_id, self._service_id = conn_id, service_id
        self._last_frame_at = time.monotonic()
        self._lost.clear()

    def _get_conn_url(self) -> str:
        """The SDK's endpoint discovery (same request, same reading of the answer), with a timeout:
        the SDK's own call has none, and a reconnect once waited on it for days."""
        response = requests.post(
            self._domain + GEN_ENDPOINT_URI,
            headers={**self._headers, "locale": "zh", "User-Agent": self._user_agent},
            json={"AppID": self._app_id, "AppSecret": self._app_secret},
            timeout=self._discovery_timeout,
        )
        if response.status_code != http.HTTPStatus.OK:
            raise ServerException(response.status_code, _message(response) or "system busy")
        answer = JSON.unmarshal(response.text, EndpointResp)
        if answer.code == SYSTEM_BUSY:
            raise ServerException(answer.code, "system busy")
        if answer.code == INTERNAL_ERROR:
            raise ServerException(answer.code, answer.msg)
        if answer.code != OK:
            raise ClientException(answer.code, answer.msg)
        if answer.data.ClientConfig is not None:
            self._configure(answer.data.ClientConfig)
        return answer.data.URL

    # -- frames ------------------------------------------------------------------------------

    async def _receive_frames(self) -> None:
        assert self._lost is not None
        conn = self._conn
        try:
            while True:
                message = await conn.recv()
                self._last_frame_at = time.monotonic()
                task = asyncio.create_task(self._handle_message(message))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # closed by either side, or the network
            log.info("long connection closed", extra={"error": f"{type(exc).__name__}: {exc}"})
            self._lost.set()

    async def _ping_forever(self) -> None:
        while True:
            try:
                await self._write_message(sdk._new_ping_frame(int(self._service_id)).SerializeToString())
            except Exception as exc:  # the watcher notices a dead connection by its silence
                log.debug("ping failed", extra={"error": repr(exc)})
            await asyncio.sleep(self._ping_interval)

    async def _handle_data_frame(self, frame: Frame) -> None:
        headers = {h.key: h.value for h in frame.headers}
        payload: bytes | None = frame.payload
        parts = int(headers.get(HEADER_SUM, "1"))
        if parts > 1:
            payload = self._combine(headers[HEADER_MESSAGE_ID], parts, int(headers[HEADER_SEQ]), payload)
            if payload is None:
                return  # more parts to come
        if headers.get(HEADER_TYPE) != "event":
            # `card` frames carry the legacy card callback, which Feishu does not send over the
            # connection for new apps (the SDK drops them unanswered too): subscribe to
            # card.action.trigger, which arrives as an event.
            log.warning("long connection frame of an unsupported type ignored",
                        extra={"type": headers.get(HEADER_TYPE)})
            return
        started = time.monotonic()
        try:
            ack = await self._loop.run_in_executor(self._pool, self._on_payload, payload)
        except Exception:
            log.exception("event intake failed")
            ack = Acknowledgement(http.HTTPStatus.INTERNAL_SERVER_ERROR)
        frame.headers.add(key=HEADER_BIZ_RT, value=str(int((time.monotonic() - started) * 1000)))
        response = Response(code=ack.code)
        if ack.data is not None:
            response.data = base64.b64encode(JSON.marshal(ack.data).encode())
        frame.payload = JSON.marshal(response).encode()
        await self._write_message(frame.SerializeToString())


def _message(response: requests.Response) -> str:
    try:
        return str(response.json().get("msg") or "")
    except ValueError:
        return ""
