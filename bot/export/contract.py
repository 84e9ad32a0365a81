"""Calls to Feishu Contract's internal endpoints with the stored browser session.

Answers are classified, not raised: the runner decides what each class means (auth → pause
the run, rate/server → back off and retry, bad request → fail the window).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bot.export.curl import ExportAuth, export_body

if TYPE_CHECKING:  # the caller hands in the client: reading a run's state needs no httpx
    import httpx

PROBE_PATH = "/clm/api/user/info"  # assumption: any session-checked GET works as a probe
TIMEZONE_OFFSET = "-480"  # minutes, as the browser sends it (UTC+8)


class Answer(StrEnum):
    OK = "ok"
    AUTH = "auth"  # the session expired or the csrf token is stale
    RATE = "rate"
    SERVER = "server"
    BAD_REQUEST = "bad_request"


@dataclass(frozen=True)
class Reply:
    answer: Answer
    status: int | None
    detail: str
    task_id: str | None = None
    total: int | None = None


def classify(status: int | None, doc: Any) -> Answer:
    code = doc.get("code") if isinstance(doc, dict) else None
    if status is None or status >= 500:
        return Answer.SERVER
    if status in (401, 403) or code in (401, 403):
        return Answer.AUTH
    if status == 429 or code == 429:
        return Answer.RATE
    if status == 200 and code in (0, None) and isinstance(doc, dict):
        return Answer.OK
    return Answer.BAD_REQUEST


def bounds(start: datetime, end: datetime, finer: bool) -> tuple[str, str]:
    """The endpoint's inclusive range for our [start, end): whole dates, or seconds when finer
    bounds are allowed and the window does not fall on day boundaries."""
    whole_days = start.time() == datetime.min.time() and end.time() == datetime.min.time()
    if whole_days or not finer:
        return start.strftime("%Y-%m-%d"), (end - timedelta(days=1)).strftime("%Y-%m-%d")
    return start.strftime("%Y-%m-%d %H:%M:%S"), (end - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S")


class ContractClient:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def submit(self, auth: ExportAuth, start: str, end: str, filters: dict[str, Any]) -> Reply:
        headers = {"timezone-offset": TIMEZONE_OFFSET, **auth.request_headers()}
        return self._send("POST", auth.url, headers, export_body(auth, start, end, filters))

    def count(self, auth: ExportAuth, path: str, start: str, end: str, filters: dict[str, Any]) -> Reply:
        """How many records the export of [start, end] would hold (the list endpoint's total)."""
        headers = {"timezone-offset": TIMEZONE_OFFSET, **auth.request_headers()}
        body = {**export_body(auth, start, end, filters), "pageNum": 1, "pageSize": 1}
        return self._send("POST", auth.origin + path, headers, body)

    def probe(self, auth: ExportAuth) -> Reply:
        headers = {k: v for k, v in auth.request_headers().items() if k != "content-type"}
        return self._send("GET", auth.origin + PROBE_PATH, headers, None)

    def _send(self, method: str, url: str, headers: dict[str, str], body: Any) -> Reply:
        import httpx

        try:
            response = self.http.request(method, url, headers=headers, json=body)
        except httpx.HTTPError as exc:
            return Reply(Answer.SERVER, None, f"{type(exc).__name__}: {exc}")
        try:
            doc = response.json()
        except ValueError:
            doc = None
        answer = classify(response.status_code, doc)
        msg = doc.get("msg") if isinstance(doc, dict) else response.text[:200]
        data = doc.get("data") if isinstance(doc, dict) else None
        task = data.get("taskId") if isinstance(data, dict) else None
        total = data.get("total") if isinstance(data, dict) and isinstance(data.get("total"), int) else None
        return Reply(answer, response.status_code, f"HTTP {response.status_code}: {msg}", task, total)
