"""Feishu's long-connection frames, as the server side writes and reads them (issue 16).

Pure: bytes in, bytes out. The wire format is lark-oapi's `pbbp2.Frame` protobuf (docs/sandbox.md,
"Long connection"): control frames carry ping/pong, data frames carry an event or card
callback split into `sum` parts, and the client acknowledges a data frame by sending it back
with a JSON response as its payload. The schema comes from the SDK's generated module (the
same one Feishu's clients use); everything else here is the server's behaviour.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from lark_oapi.ws.pb.pbbp2_pb2 import Frame

CONTROL, DATA = 0, 1
PART_BYTES = 32 * 1024  # payloads longer than this go out in several frames


@dataclass(frozen=True)
class Ack:
    """A client's acknowledgement of one data frame."""

    message_id: str
    code: int  # 200: handled; 500: the handler raised
    answer: Any  # what the handler returned (a card callback's toast/card), or None
    handler_ms: int | None  # the client's `biz_rt` header


class FrameError(ValueError):
    """Bytes that are not a frame this server understands."""


def _headers(frame: Frame) -> dict[str, str]:
    return {h.key: h.value for h in frame.headers}


def header(frame: Frame, key: str) -> str | None:
    """One header's value (None when the frame has no such header), e.g. a control frame's type."""
    return _headers(frame).get(key)


def _frame(method: int, service_id: int, headers: dict[str, str], payload: bytes = b"") -> Frame:
    frame = Frame(SeqID=0, LogID=0, service=service_id, method=method, payload=payload)
    for key, value in headers.items():
        frame.headers.add(key=key, value=value)
    return frame


def pong(ping: bytes, client_config: dict[str, int] | None = None) -> bytes | None:
    """The answer to a client's ping (None if the bytes are not a ping); a pong may carry new
    client settings (PingInterval, ReconnectCount, ReconnectInterval, ReconnectNonce)."""
    frame = parse(ping)
    if frame.method != CONTROL or _headers(frame).get("type") != "ping":
        return None
    payload = json.dumps(client_config).encode() if client_config else b""
    return _frame(CONTROL, frame.service, {"type": "pong"}, payload).SerializeToString()


def data_frames(kind: str, message_id: str, trace_id: str, payload: bytes, service_id: int,
                part_bytes: int = PART_BYTES) -> list[bytes]:
    """One event (`kind` "event") or card callback ("card") as the frames that carry it."""
    if kind not in ("event", "card"):
        raise ValueError(f"unknown data frame type {kind!r}")
    parts = [payload[i:i + part_bytes] for i in range(0, len(payload), part_bytes)] or [b""]
    return [
        _frame(DATA, service_id, {"type": kind, "message_id": message_id, "trace_id": trace_id,
                                  "sum": str(len(parts)), "seq": str(seq)}, part).SerializeToString()
        for seq, part in enumerate(parts)
    ]


def parse(data: bytes) -> Frame:
    frame = Frame()
    try:
        frame.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError and missing required fields
        raise FrameError(f"not a frame: {exc}") from None
    return frame


def ack(data: bytes) -> Ack | None:
    """The acknowledgement a client sent (None for a control frame, e.g. its ping)."""
    frame = parse(data)
    if frame.method != DATA:
        return None
    headers = _headers(frame)
    if "message_id" not in headers:
        raise FrameError("a data frame without message_id")
    try:
        response = json.loads(frame.payload or b"{}")
        code = int(response.get("code"))
        encoded = response.get("data")
        answer = json.loads(base64.b64decode(encoded)) if encoded else None
    except (ValueError, TypeError) as exc:
        raise FrameError(f"an acknowledgement that is not the SDK's response JSON: {exc}") from None
    rt = headers.get("biz_rt")
    return Ack(headers["message_id"], code, answer, int(rt) if rt and rt.isdigit() else None)
