"""Calling a Coze workflow through the official cozepy SDK, and what its errors mean for us.

One `Coze` client per (API URL, key) is built once and reused (its httpx pool too); cozepy has
no retries of its own, so every failure comes back here, is classified, and the outbox decides
when to try again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

import httpx
from cozepy import Coze, CozeAPIError, SyncHTTPClient, TokenAuth


class ErrorKind(StrEnum):
    AUTH = "auth"  # invalid or under-privileged key: fix the template's key
    NOT_FOUND = "not_found"  # no such (published) workflow
    RATE_LIMITED = "rate_limited"
    BAD_REQUEST = "bad_request"  # the parameters were refused: retrying will not help
    QUOTA = "quota"  # daily limit or balance: retry much later
    SERVER = "server"  # Coze failed or could not be reached


# Documented Coze codes (shared/README.md). Unknown codes ≥ 5000 or HTTP statuses: server.
_CODES = {
    4100: ErrorKind.AUTH,
    4101: ErrorKind.AUTH,
    4102: ErrorKind.AUTH,
    4200: ErrorKind.NOT_FOUND,
    4009: ErrorKind.RATE_LIMITED,
    4020: ErrorKind.RATE_LIMITED,
    429: ErrorKind.RATE_LIMITED,
    4000: ErrorKind.BAD_REQUEST,
    4008: ErrorKind.QUOTA,
    4011: ErrorKind.QUOTA,
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
}

# What a template's status says after its latest delivery.
STATUS_FOR = {
    None: "ACTIVE",
    ErrorKind.AUTH: "AUTH_ERROR",
    ErrorKind.NOT_FOUND: "WORKFLOW_NOT_FOUND",
    ErrorKind.RATE_LIMITED: "RATE_LIMITED",
    ErrorKind.BAD_REQUEST: "BAD_PARAMETERS",
    ErrorKind.QUOTA: "QUOTA_EXCEEDED",
    ErrorKind.SERVER: "COZE_UNAVAILABLE",
}


def classify(code: int | None) -> ErrorKind:
    if code is None:
        return ErrorKind.SERVER
    return _CODES.get(code, ErrorKind.SERVER)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    duration_ms: int
    execute_id: str | None = None
    debug_url: str | None = None
    logid: str | None = None
    data: str | None = None
    kind: ErrorKind | None = None
    code: int | None = None
    error: str | None = None


def _adopt_sdk_logger() -> None:
    """cozepy prints through its own stderr handler, past our JSON formatter and secret
    scrubbing; route it through ours instead. Failures are recorded per call in
    coze_deliveries, so its per-request warnings are noise: keep errors only."""
    sdk = logging.getLogger("cozepy")
    sdk.handlers.clear()
    sdk.propagate = True
    sdk.setLevel(logging.ERROR)


class CozeClients:
    """Coze SDK clients, one per (base URL, key), shared by the dispatcher's threads."""

    def __init__(self, timeout: float) -> None:
        _adopt_sdk_logger()
        self._timeout = timeout
        self._clients: dict[tuple[str, str], Coze] = {}
        self._lock = threading.Lock()

    def get(self, base_url: str, key: str) -> Coze:
        with self._lock:
            client = self._clients.get((base_url, key))
            if client is None:
                http = SyncHTTPClient(timeout=self._timeout, limits=httpx.Limits(max_connections=64))
                client = Coze(auth=TokenAuth(key), base_url=base_url, http_client=http)
                self._clients[(base_url, key)] = client
            return client

    def run(self, base_url: str, key: str, workflow_id: str, parameters: dict) -> Outcome:
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            result = self.get(base_url, key).workflows.runs.create(
                workflow_id=workflow_id, parameters=parameters
            )
        except CozeAPIError as exc:
            return Outcome(
                False,
                elapsed(),
                debug_url=exc.debug_url,
                logid=exc.logid,
                kind=classify(exc.code),
                code=exc.code,
                error=(exc.msg or str(exc))[:500],
            )
        except httpx.HTTPError as exc:
            return Outcome(
                False, elapsed(), kind=ErrorKind.SERVER, error=f"{type(exc).__name__}: {exc}"[:500]
            )
        return Outcome(
            True,
            elapsed(),
            execute_id=result.execute_id or None,
            debug_url=result.debug_url or None,
            logid=result.response.logid,
            data=result.data,
        )
