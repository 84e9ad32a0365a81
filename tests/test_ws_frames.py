"""The sandbox's long-connection frames (sandbox/ws_frames.py) against the real lark-oapi client's
frame handling: what the sandbox sends, the SDK understands, and what the SDK answers, the
sandbox reads (issue 16, first piece: no connection yet)."""

from __future__ import annotations

import asyncio
import json

import lark_oapi as lark
import pytest
from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTriggerResponse
from lark_oapi.ws.client import Client

from sandbox import ws_frames


class _Socket:
    """Stands in for the websocket: collects what the client writes."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, data: bytes) -> None:
        self.sent.append(data)


def _client(handler) -> tuple[Client, _Socket]:
    client = Client("cli_sandbox", "secret", event_handler=handler, auto_reconnect=False)
    socket = _Socket()
    client._conn = socket
    return client, socket


def _deliver(client: Client, frames: list[bytes]) -> None:
    async def run():
        for frame in frames:
            await client._handle_message(frame)
    asyncio.run(run())


def _event(event_id: str, text: str) -> bytes:
    header = {"event_id": event_id, "event_type": "im.message.receive_v1", "token": "",
              "app_id": "cli_sandbox"}
    return json.dumps({"schema": "2.0", "header": header,
                       "event": {"message": {"message_id": "om_1", "chat_id": "oc_1", "chat_type": "p2p",
                                             "message_type": "text", "content": json.dumps({"text": text})},
                                 "sender": {"sender_id": {"open_id": "ou_1"}}}},
                      ensure_ascii=False).encode()


def test_an_event_split_into_parts_reaches_the_handler_whole_and_is_acknowledged_once():
    seen = []
    handler = lark.EventDispatcherHandler.builder("", "").register_p2_im_message_receive_v1(
        lambda data: seen.append(json.loads(data.event.message.content)["text"])).build()
    client, socket = _client(handler)
    text = "长" * 30000  # well over one 32 KiB part
    frames = ws_frames.data_frames("event", "msg-1", "trace-1", _event("ev-1", text), service_id=7)
    assert len(frames) > 2
    _deliver(client, frames[::-1])  # parts may arrive in any order
    assert seen == [text]
    [ack] = [ws_frames.ack(data) for data in socket.sent]
    assert ack.message_id == "msg-1" and ack.code == 200 and ack.answer is None
    assert ack.handler_ms is not None


def test_a_card_callbacks_answer_comes_back_in_its_acknowledgement():
    handler = lark.EventDispatcherHandler.builder("", "").register_p2_card_action_trigger(
        lambda data: P2CardActionTriggerResponse({"toast": {"type": "success", "content": "已开始"}})).build()
    client, socket = _client(handler)
    header = {"event_id": "ev-2", "event_type": "card.action.trigger"}
    event = {"operator": {"open_id": "ou_1"}, "action": {"value": {"action": "x"}}}
    payload = json.dumps({"schema": "2.0", "header": header, "event": event}).encode()
    _deliver(client, ws_frames.data_frames("event", "msg-2", "trace-2", payload, service_id=7))
    [ack] = [ws_frames.ack(data) for data in socket.sent]
    assert ack.answer == {"toast": {"type": "success", "content": "已开始"}}


def test_a_card_type_frame_gets_no_acknowledgement_from_the_sdk():
    """lark-oapi #126: `card` frames are dropped, so Feishu would re-send them; new-style card
    callbacks must come as `event` frames."""
    client, socket = _client(lark.EventDispatcherHandler.builder("", "").build())
    _deliver(client, ws_frames.data_frames("card", "msg-3", "trace-3", b"{}", service_id=7))
    assert socket.sent == []


def test_a_handler_that_raises_is_acknowledged_500():
    def boom(data):
        raise RuntimeError("kaput")
    handler = lark.EventDispatcherHandler.builder("", "").register_p2_im_message_receive_v1(boom).build()
    client, socket = _client(handler)
    _deliver(client, ws_frames.data_frames("event", "msg-4", "trace-4", _event("ev-4", "x"), service_id=7))
    assert ws_frames.ack(socket.sent[0]).code == 500


def test_the_clients_ping_is_answered_with_a_pong_that_can_reconfigure_it():
    client, socket = _client(None)
    client._service_id = "7"

    async def ping():
        client._ping_interval = 0.01
        task = asyncio.ensure_future(client._ping_loop())
        while not socket.sent:
            await asyncio.sleep(0.01)
        task.cancel()
    asyncio.run(ping())
    assert ws_frames.ack(socket.sent[0]) is None  # a control frame, not an acknowledgement
    answer = ws_frames.pong(socket.sent[0], {"PingInterval": 5, "ReconnectCount": -1,
                                            "ReconnectInterval": 3, "ReconnectNonce": 1})
    _deliver(client, [answer])
    assert client._ping_interval == 5 and client._reconnect_interval == 3


def test_bytes_that_are_not_frames_are_a_clear_error():
    with pytest.raises(ws_frames.FrameError):
        ws_frames.ack(b"\xff\x00not protobuf")
    assert ws_frames.pong(ws_frames.data_frames("event", "m", "t", b"{}", 1)[0]) is None
