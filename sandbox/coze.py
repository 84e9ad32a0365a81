"""The sandbox's Coze: published workflows, personal access tokens, every call recorded, and
fault knobs (down, slow, rate-limited, failing) for the outbox's retries to be seen working."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

COZE_SANDBOX_KEY = "pat_sandbox_coze_key_0001"
# Workflows the seed's examples name, published in the sandbox.
SEEDED_WORKFLOWS = (
    "workflow_123",
    "customer_sync_workflow",
    "product_sync_workflow",
    "supplier_sync_workflow",
)


@dataclass
class CozeFaults:
    down: bool = False  # the gateway answers 502 with an HTML page (not JSON)
    slow_seconds: float = 0.0  # every call takes this much longer
    rate_limit: float = 0.0  # probability of HTTP 429, code 4009
    server_error: float = 0.0  # probability of code 5000

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise ValueError(f"unknown coze fault {key!r}")
            if isinstance(getattr(self, key), bool):
                setattr(self, key, bool(value))
            else:
                number = float(value)
                if key != "slow_seconds" and not 0.0 <= number <= 1.0:
                    raise ValueError(f"{key} must be between 0 and 1")
                setattr(self, key, max(0.0, number))


@dataclass
class CozeWorld:
    keys: set[str] = field(default_factory=lambda: {COZE_SANDBOX_KEY})
    workflows: set[str] = field(default_factory=lambda: set(SEEDED_WORKFLOWS))
    faults: CozeFaults = field(default_factory=CozeFaults)
    calls: list[dict[str, Any]] = field(default_factory=list)  # every call and its answer code
    lock: threading.Lock = field(default_factory=threading.Lock)
    random: random.Random = field(default_factory=lambda: random.Random(7))
    serial: int = 0

    def roll(self) -> float:
        with self.lock:
            return self.random.random()

    def next_id(self) -> int:
        with self.lock:
            self.serial += 1
            return self.serial

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append(entry)

    def delivered(self) -> list[dict[str, Any]]:
        """Calls that succeeded, in arrival order."""
        with self.lock:
            return [c for c in self.calls if c["code"] == 0]
