"""How fresh a signed webhook request must be, and how long receipts must outlive it. Pure.

Feishu signs each delivery when it sends it — re-deliveries included — with
`X-Lark-Signature = sha256(timestamp + nonce + encrypt_key + body)`. The signature proves the
timestamp, so a request whose timestamp is far from our clock is a captured request played
again (or a clock to fix), never a late re-delivery. lark-oapi checks the signature only.
"""

from __future__ import annotations

from datetime import timedelta

# Feishu re-delivers a failed push after 15 s, 5 min, 1 h and 6 h: about 7.1 h in all
# (open.feishu.cn "接收事件": 以 15秒、5分钟、1小时、6小时 的间隔重新推送事件, 最多重试 4 次).
FEISHU_REDELIVERY_SPAN = timedelta(seconds=15 + 300 + 3600 + 21600)


def min_receipt_retention(window_seconds: int) -> timedelta:
    """How long receipts must be kept: past Feishu's last re-delivery, plus the window (a
    re-delivery sent at the span's end is still accepted that much later)."""
    return FEISHU_REDELIVERY_SPAN + timedelta(seconds=max(0, window_seconds))


def stale_reason(timestamp: str | None, now: float, window_seconds: int) -> str | None:
    """Why a signed `X-Lark-Request-Timestamp` (Unix seconds) is refused; None when it is
    within `window_seconds` of `now` either way (or the check is off, or there is none: the
    signature check then refuses the request)."""
    if window_seconds <= 0 or timestamp is None:
        return None
    text = timestamp.strip()
    if not text.isdigit() or len(text) > 12:  # "abc", "-1", "1.5", absurdly long
        return f"X-Lark-Request-Timestamp {timestamp[:32]!r} is not a Unix time in seconds"
    skew = int(text) - now
    if abs(skew) > window_seconds:
        direction = "old" if skew < 0 else "in the future"
        return (f"X-Lark-Request-Timestamp is {abs(int(skew))} s {direction}; requests are accepted "
                f"within {window_seconds} s (WEBHOOK_TIMESTAMP_WINDOW_SECONDS) of this server's clock")
    return None
