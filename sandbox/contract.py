"""The sandbox's Feishu Contract: browser sessions, the export endpoint's back end, and how
finished exports come back — as file messages from the contract bot in the user's chat.

An accepted export is processed after a delay on a timer thread: the matching records (at most
`cap`, the first ones by creation time — the truncation the planner must catch) are written to
an .xlsx and posted as a `file` message in the user's chat with the contract bot. The app's
bot is not in that chat, so — as with Feishu — no event reaches the app: the bridge finds the
message only by listing the chat with the user's token. Fault knobs lose, duplicate, delay or
reorder those messages, deny the API download, or expire the session.
"""

from __future__ import annotations

import bisect
import io
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sandbox.seed_contract import COLUMNS, TIME_FORMAT, Cooperation, cooperation_records

CONTRACT_BOT_APP_ID = "cli_sandbox_contract_bot"
CONTRACT_CHAT_ID = "oc_sandbox_contract_bot_chat"
SESSION_COOKIES = ("session", "sl_session")
CSRF_COOKIE = "clm_csrf_token"
FILE_PREFIX = "协同操作记录导出"
# The knob that once pushed completion messages as events is refused with this, not ignored:
# a test that asks for events must learn that Feishu does not send them.
NO_EVENTS = ("'events' is gone: the contract bot's chat is not one of the app's chats, so Feishu "
             "never delivers its messages as events; the bridge polls the chat as EXPORT_USER")


@dataclass
class ContractFaults:
    """Probabilities (0..1) and switches for the export endpoint and its messages."""

    server_error: float = 0.0
    rate_limit: float = 0.0
    lose_message: float = 0.0
    duplicate_message: float = 0.0
    deny_download: float = 0.0  # share of files whose open-platform download is refused
    delay_seconds: float = 0.05  # before the completion message
    jitter_seconds: float = 0.0  # extra random delay: messages arrive out of order
    finer_bounds: bool = True  # accept "YYYY-MM-DD HH:MM:SS" bounds, not only dates
    auto_scan: bool = False  # the web messenger's QR login is approved at once
    # Scripted faults, by 1-based ordinal of completed exports, so a test can rely on each fault
    # happening at least once whatever the probabilities roll.
    lose_nth: list[int] = field(default_factory=list)
    duplicate_nth: list[int] = field(default_factory=list)
    deny_nth: list[int] = field(default_factory=list)  # every copy of that export's file

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key == "events":
                raise ValueError(NO_EVENTS)
            if not hasattr(self, key):
                raise ValueError(f"unknown contract fault {key!r}")
            current = getattr(self, key)
            if isinstance(current, list):
                setattr(self, key, [int(n) for n in value])
                continue
            if isinstance(current, bool):
                setattr(self, key, bool(value))
                continue
            number = float(value)
            if key not in ("delay_seconds", "jitter_seconds") and not 0.0 <= number <= 1.0:
                raise ValueError(f"{key} must be between 0 and 1")
            setattr(self, key, max(0.0, number))


@dataclass
class ExportFile:
    file_key: str
    file_name: str
    content: bytes
    rows: int
    denied: bool = False


@dataclass
class ContractWorld:
    today: date
    seed: int
    cap: int = 1000
    faults: ContractFaults = field(default_factory=ContractFaults)
    session: str = "sandbox-session-0001"
    sl_session: str = "sandbox-sl-session-0001"
    csrf_token: str = "sandbox-csrf-token-0001"
    exports: list[dict[str, Any]] = field(default_factory=list)  # every accepted export request
    calls: list[dict[str, Any]] = field(default_factory=list)  # every export call and its answer
    count_calls: int = 0  # answered list (count) requests
    completed: int = 0  # exports whose processing finished (lost or not)
    files: dict[str, ExportFile] = field(default_factory=dict)
    messenger_sessions: set[str] = field(default_factory=set)
    qr_codes: dict[str, bool] = field(default_factory=dict)  # qr id → scanned
    _records: list[Cooperation] | None = None
    _times: list[str] | None = None
    _timers: set[threading.Timer] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock)
    random: random.Random = field(default_factory=lambda: random.Random(5))

    @property
    def records(self) -> list[Cooperation]:
        with self.lock:
            if self._records is None:
                self._records = cooperation_records(self.today, self.seed)
                self._times = [r.created for r in self._records]
            return self._records

    def cookie_problem(self, cookies: dict[str, str], csrf_header: str | None) -> str | None:
        if cookies.get("session") != self.session or cookies.get("sl_session") != self.sl_session:
            return "session expired or missing"
        if cookies.get(CSRF_COOKIE) != self.csrf_token or csrf_header != self.csrf_token:
            return "csrf token mismatch"
        return None

    def expire_session(self) -> dict[str, str]:
        """Invalidate the browser session; the answer is the new one (as if the user logged in again)."""
        with self.lock:
            serial = int(self.session.rsplit("-", 1)[-1]) + 1
            self.session = f"sandbox-session-{serial:04d}"
            self.sl_session = f"sandbox-sl-session-{serial:04d}"
            self.csrf_token = f"sandbox-csrf-token-{serial:04d}"
            return self.credentials()

    def credentials(self) -> dict[str, str]:
        return {"session": self.session, "sl_session": self.sl_session, "csrf_token": self.csrf_token}

    def select(self, start: str, end: str) -> list[Cooperation]:
        """Records created in [start, end], both inclusive as the UI's range picker means it:
        a date covers its whole day, a datetime ("YYYY-MM-DD HH:MM:SS") is exact to the second."""
        records = self.records
        low = start if len(start) > 10 else f"{start} 00:00:00"
        high = end if len(end) > 10 else f"{end} 23:59:59"
        assert self._times is not None
        return records[bisect.bisect_left(self._times, low) : bisect.bisect_right(self._times, high)]

    def next_completion(self) -> int:
        with self.lock:
            self.completed += 1
            return self.completed

    def roll(self) -> float:
        with self.lock:
            return self.random.random()

    def build_file(self, export_id: str, rows: list[Cooperation]) -> ExportFile:
        from openpyxl import Workbook

        book = Workbook(write_only=True)
        sheet = book.create_sheet("协同记录")
        sheet.append(list(COLUMNS))
        for record in rows:
            sheet.append(list(record.values))
        buffer = io.BytesIO()
        book.save(buffer)
        stamp = datetime.now().strftime("%Y%m%d%H%M%S")
        return ExportFile(
            file_key=f"file_v3_sandbox_{export_id}",
            file_name=f"{FILE_PREFIX}_{stamp}_{export_id}.xlsx",
            content=buffer.getvalue(),
            rows=len(rows),
        )

    def schedule(self, delay: float, action: Callable[[], None]) -> None:
        def fire() -> None:
            with self.lock:
                self._timers.discard(timer)
            action()

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self.lock:
            self._timers.add(timer)
        timer.start()

    def cancel_timers(self) -> None:
        with self.lock:
            timers, self._timers = set(self._timers), set()
        for timer in timers:
            timer.cancel()

    def truth(self) -> dict[str, tuple]:
        """Every record by id, as the export file would hold it."""
        return {r.record_id: r.values for r in self.records}


def file_message_content(export_file: ExportFile) -> str:
    return json.dumps(
        {"file_key": export_file.file_key, "file_name": export_file.file_name}, ensure_ascii=False
    )


def now_text() -> str:
    return time.strftime(TIME_FORMAT)
