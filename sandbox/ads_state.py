"""The ads platform's world (issue 17): one grant store behind one lock — refresh tokens that are
single-use and rotate, access tokens that outlive a refresh — every call recorded, and the fault
knobs. `sandbox/products/ads.py` serves it; `sandbox/ads_control.py` drives it for tests.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sandbox.seed_ads import ADS_APP_ID, ADS_SECRET

__all__ = ["ADS_APP_ID", "ADS_SECRET", "AdsFaults", "AdsWorld"]

ACCESS_LIFETIME = 86400  # 24 h
REFRESH_LIFETIME = 30 * 24 * 3600  # 30 days from issue (a rotation starts a new 30 days)
BEIJING = timezone(timedelta(hours=8))

# Ads-style codes (HTTP 200, signalled in the body).
OK = 0
BAD_PARAMS = 40000
APP_INVALID = 40001
MISSING_FIELD = 40002
ACCESS_EXPIRED = 40102
REFRESH_EXPIRED = 40103
ACCESS_INVALID = 40105
REFRESH_INVALID = 40107
RATE_LIMITED = 40100
SERVER_ERROR = 50000


@dataclass
class RefreshToken:
    refresh_expires_at: float
    used: bool = False
    revoked: bool = False


@dataclass
class AccessToken:
    expires_at: float
    revoked: bool = False


@dataclass
class AdsFaults:
    """Each fires for the next `*_error_count` calls, then with probability `*_error_rate`;
    a firing call answers one of `error_statuses` (500 or 429), picked by the seeded generator.
    `report_*` applies to the data endpoints (advertisers, daily report), `token_*` to both
    refresh endpoints (nothing is rotated)."""

    report_error_rate: float = 0.0
    report_error_count: int = 0
    token_error_rate: float = 0.0
    token_error_count: int = 0
    error_statuses: tuple[int, ...] = (500, 429)

    def update(self, values: dict[str, Any]) -> None:
        unknown = set(values) - {*vars(self), "seed"}
        if unknown:
            raise ValueError(f"unknown ads fault(s): {', '.join(sorted(unknown))}")
        for key in ("report_error_rate", "token_error_rate"):
            if key in values:
                rate = float(values[key])
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"{key} must be between 0 and 1")
                setattr(self, key, rate)
        for key in ("report_error_count", "token_error_count"):
            if key in values:
                setattr(self, key, max(0, int(values[key])))
        if "error_statuses" in values:
            statuses = tuple(int(s) for s in values["error_statuses"])
            if not statuses or not set(statuses) <= {500, 429}:
                raise ValueError("error_statuses: a non-empty list of 500 and/or 429")
            self.error_statuses = statuses


@dataclass
class AdsWorld:
    seed: int = 20220101
    lock: threading.Lock = field(default_factory=threading.Lock)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    faults: AdsFaults = field(default_factory=AdsFaults)
    calls: list[dict[str, Any]] = field(default_factory=list)
    refresh_attempts: list[dict[str, Any]] = field(default_factory=list)
    refreshes: int = 0
    report_calls: int = 0
    today_override: date | None = None
    # every token ever issued, kept across resets (for the suite's secrets scan)
    issued: list[str] = field(default_factory=list)
    serial: int = 0

    def __post_init__(self) -> None:
        self.random = random.Random(f"ads-faults:{self.seed}")

    def fresh(self) -> AdsWorld:
        """The world after `POST /sandbox/reset`: no grants, calls, faults; the issued-token log kept."""
        return AdsWorld(seed=self.seed, issued=self.issued)

    def today(self) -> date:
        """The platform's "today": the date in UTC+8 (or the override)."""
        return self.today_override or datetime.now(BEIJING).date()

    def request_id(self) -> str:
        with self.lock:
            self.serial += 1
            serial = self.serial
        return f"{datetime.now(BEIJING):%Y%m%d%H%M%S}SANDBOX{serial:010d}"

    # -- grants --------------------------------------------------------------------------

    def _issue(self, expires_in: int, refresh_expires_in: int) -> dict[str, Any]:
        """A new access/refresh pair (call under the lock)."""
        now = time.time()
        access = "ads-sandbox-at-" + secrets.token_hex(16)
        refresh = "ads-sandbox-rt-" + secrets.token_hex(16)
        self.access_tokens[access] = AccessToken(now + expires_in)
        self.refresh_tokens[refresh] = RefreshToken(now + refresh_expires_in)
        self.issued += [access, refresh]
        return {"access_token": access, "expires_in": expires_in, "refresh_token": refresh,
                "refresh_token_expires_in": refresh_expires_in}

    def grant(self, expires_in: int = ACCESS_LIFETIME, refresh_expires_in: int = REFRESH_LIFETIME
              ) -> dict[str, Any]:
        """The user authorised the app in the platform's console."""
        with self.lock:
            return self._issue(expires_in, refresh_expires_in)

    def refresh(self, refresh_token: str) -> tuple[str, dict[str, Any] | None]:
        """Rotate: ("ok", new pair) — the old refresh token is spent, the old access token kept
        until its own expiry — or ("invalid" | "used" | "revoked" | "expired", None). Atomic:
        of concurrent refreshes with one token exactly one succeeds."""
        with self.lock:
            known = self.refresh_tokens.get(refresh_token)
            if known is None:
                return "invalid", None
            if known.revoked:
                return "revoked", None
            if known.used:
                return "used", None
            if known.refresh_expires_at <= time.time():
                return "expired", None
            known.used = True
            self.refreshes += 1
            return "ok", self._issue(ACCESS_LIFETIME, REFRESH_LIFETIME)

    def access_state(self, token: str) -> str:
        """'valid', 'expired' or 'invalid' (unknown or revoked)."""
        with self.lock:
            known = self.access_tokens.get(token)
        if known is None or known.revoked:
            return "invalid"
        return "valid" if known.expires_at > time.time() else "expired"

    def expire_access(self) -> int:
        with self.lock:
            for token in self.access_tokens.values():
                token.expires_at = 0.0
            return len(self.access_tokens)

    def revoke(self) -> int:
        with self.lock:
            for token in (*self.refresh_tokens.values(), *self.access_tokens.values()):
                token.revoked = True
            return len(self.refresh_tokens)

    def set_refresh_expires_in(self, seconds: int) -> int:
        """Every live refresh token (not spent, not revoked) now expires `seconds` from now."""
        with self.lock:
            live = [t for t in self.refresh_tokens.values() if not (t.used or t.revoked)]
            for token in live:
                token.refresh_expires_at = time.time() + seconds
            return len(live)

    # -- calls and faults ----------------------------------------------------------------

    def fault(self, kind: str) -> int | None:
        """The HTTP status (500 or 429) this call is answered with, or None. kind: report | token."""
        with self.lock:
            count = getattr(self.faults, f"{kind}_error_count")
            if count > 0:
                setattr(self.faults, f"{kind}_error_count", count - 1)
                fired = True
            else:
                rate = getattr(self.faults, f"{kind}_error_rate")
                fired = rate > 0 and self.random.random() < rate
            return self.random.choice(self.faults.error_statuses) if fired else None

    def set_faults(self, values: dict[str, Any]) -> None:
        with self.lock:
            self.faults.update(values)
            if "seed" in values:
                self.random = random.Random(f"ads-faults:{values['seed']}")

    def record(self, method: str, path: str, status: int, code: int | str, **extra: Any) -> None:
        with self.lock:
            self.calls.append({"method": method, "path": path, "status": status, "code": code,
                               "at": time.time(), **extra})

    def log_refresh(self, style: str, outcome: str) -> None:
        with self.lock:
            self.refresh_attempts.append({"style": style, "outcome": outcome, "at": time.time()})

    def count_report_call(self) -> None:
        with self.lock:
            self.report_calls += 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            now = time.time()
            live = [t for t in self.refresh_tokens.values() if not (t.used or t.revoked)]
            return {"refreshes": self.refreshes, "refresh_attempts": list(self.refresh_attempts),
                    "report_calls": self.report_calls, "calls": list(self.calls),
                    "live_refresh_tokens": len(live),
                    "refresh_token_expires_in": sorted(max(0, int(t.refresh_expires_at - now)) for t in live),
                    "faults": {**vars(self.faults), "error_statuses": list(self.faults.error_statuses)},
                    "today": self.today().isoformat()}
