"""When a long connection is dead, and how long to wait before dialling again. Pure.

lark-oapi pings every `PingInterval` seconds but never checks that a pong comes back (docs/
sandbox.md, "Long connection"): a connection whose far end went silent — a NAT that forgot it, a
server that stopped answering — looks alive forever, and no event arrives. So the listener
counts any frame (pong or event) as a sign of life and gives up on a connection that has been
quiet for more than `intervals` ping intervals. A healthy one is never quiet longer than one
interval plus a round trip, since each ping is answered.
"""

from __future__ import annotations

import random

FIRST_DELAY = 0.5  # seconds: the first reconnect after a loss is quick, jittered


def is_silent(last_frame_at: float, now: float, ping_interval: float, intervals: float) -> bool:
    """No frame for longer than `intervals` ping intervals: the connection is dead."""
    return now - last_frame_at > ping_interval * intervals


def check_every(ping_interval: float) -> float:
    """How often to look: often enough that a dead connection is replaced within two ping
    intervals (silence is noticed at most this late after the limit, 1.5 intervals by default)."""
    return min(max(ping_interval / 8, 0.05), 5.0)


def reconnect_delay(failures: int, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter (0.5 s, 1 s, 2 s … up to `cap`): a fleet of listeners
    that lost Feishu together does not dial back in lock step."""
    return rng.uniform(0, min(cap, FIRST_DELAY * 2 ** max(failures, 0)))
