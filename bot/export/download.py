"""Getting a completion message's file onto disk, and filing it in the archive.

The open-platform message-resource API is tried first (as the export user: the file sits in
their chat with the contract bot); when it refuses, the web messenger is driven in a real
browser instead (bot/export/messenger.py). Either way the bytes land in `incoming/` under the
file's row id (never a name taken from a message), are hashed and read, and move to their
archive name once matched to a window.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.export.files import FileSummary, archive_name, read_export, sha256_of, summarize
from bot.export.limits import WorkbookLimits
from bot.models import ExportFile, utcnow
from bot.private import private_dir, write_private_bytes

if TYPE_CHECKING:
    from bot.feishu import Feishu
    from bot.services import Services

log = logging.getLogger(__name__)


def incoming_dir(settings: Settings) -> Path:
    private_dir(settings.effective_archive_dir)  # business records: owner only (bot/private.py)
    return private_dir(settings.effective_archive_dir / "incoming")


def incoming_path(settings: Settings, file_id: int, suffix: str) -> Path:
    """Where a download lands: named by the export_files row id, which we chose."""
    return incoming_dir(settings) / f"file-{int(file_id)}{suffix}"


def fetch_via_api(feishu: Feishu, settings: Settings, message_id: str, file_key: str) -> bytes:
    from lark_oapi.api.im.v1 import GetMessageResourceRequest

    def request() -> GetMessageResourceRequest:
        return (
            GetMessageResourceRequest.builder().message_id(message_id).file_key(file_key).type("file").build()
        )

    response = feishu.call(
        "im.v1.message_resource.get",
        lambda client, option: client.im.v1.message_resource.get(request(), option),
        as_user=settings.export_user or None,
    )
    return response.file.read()


class DownloadFailed(RuntimeError):
    """Neither the API nor the web messenger produced the file (retried by the download job)."""


def fetch_with_fallback(by_api: Callable[[], bytes], by_browser: Callable[[], bytes]) -> tuple[bytes, str]:
    """The file's bytes and how they came: by API, or — when the API refuses (no permission,
    the resource is not the app's to read) — through the web messenger in a browser."""
    from bot.feishu import FeishuAPIError

    try:
        return by_api(), "api"
    except FeishuAPIError as exc:
        log.warning("API download refused; using the web messenger", extra={"code": exc.code})
        refused = exc
    try:
        return by_browser(), "browser"
    except Exception as exc:
        raise DownloadFailed(f"api: {refused}; browser: {exc}") from exc


def fetch_file(services: Services, record: ExportFile) -> tuple[bytes, str]:
    """A completion message's file, by API or else by browser (see `fetch_with_fallback`)."""
    settings = services.settings

    def by_api() -> bytes:
        return fetch_via_api(services.feishu, settings, record.message_id, record.file_key)

    def by_browser() -> bytes:
        from bot.export import messenger

        target = incoming_path(settings, record.id, ".browser")
        messenger.download(settings, record.message_id, record.file_name, target)
        try:
            return target.read_bytes()
        finally:
            target.unlink(missing_ok=True)

    return fetch_with_fallback(by_api, by_browser)


def list_chat_messages(feishu: Feishu, settings: Settings, since_seconds: int) -> list[dict]:
    """The export chat's messages since a time (the polling path), oldest first, raw JSON items."""
    from lark_oapi.api.im.v1 import ListMessageRequest

    items: list[dict] = []
    page_token = ""
    while True:

        def request(token: str = page_token) -> ListMessageRequest:
            builder = (
                ListMessageRequest.builder()
                .container_id_type("chat")
                .container_id(settings.export_chat_id)
                .start_time(str(since_seconds))
                .sort_type("ByCreateTimeAsc")
                .page_size(50)
            )
            return (builder.page_token(token) if token else builder).build()

        response = feishu.call(
            "im.v1.message.list",
            lambda client, option: client.im.v1.message.list(request(), option),
            as_user=settings.export_user or None,
        )
        data = json.loads(response.raw.content)["data"]
        items += data.get("items") or []
        if not data.get("has_more"):
            return items
        page_token = data.get("page_token") or ""


def save_download(engine: Engine, settings: Settings, file_id: int, content: bytes, via: str) -> FileSummary:
    """Write the bytes durably, read them, and record size, hash and rows on the file's row."""
    path = incoming_path(settings, file_id, ".xlsx")
    partial = path.with_suffix(".part")
    write_private_bytes(partial, content, sync=True)
    partial.replace(path)
    frame = read_export(path, id_column=settings.export_id_column, time_column=settings.export_time_column,
                        limits=WorkbookLimits.from_settings(settings))
    summary = summarize(frame, settings.export_time_column)
    with Session(engine) as session, session.begin():
        record = session.get_one(ExportFile, file_id)
        record.state, record.downloaded_via, record.path = "downloaded", via, str(path)
        record.size, record.sha256, record.rows = len(content), sha256_of(path), summary.rows
        record.min_created, record.max_created = summary.first_created, summary.last_created
        record.last_error, record.updated_at = None, utcnow()
    return summary


def file_away(engine: Engine, settings: Settings, file_id: int) -> Path | None:
    """Move a matched, accepted file to its archive name (合同协同_YYYYMMDD-YYYYMMDD.xlsx)."""
    from bot.models import ExportWindow

    with Session(engine) as session, session.begin():
        record = session.get_one(ExportFile, file_id)
        window = session.get(ExportWindow, record.window_id) if record.window_id else None
        if window is None or window.state != "verified" or not record.path:
            return None
        target = settings.effective_archive_dir / archive_name(window.start_at, window.end_at)
        source = Path(record.path)
        if source != target and source.exists():
            source.replace(target)
        record.path = str(target)
        return target


def mark_failed(engine: Engine, file_id: int, error: str, *, final: bool) -> None:
    with Session(engine) as session, session.begin():
        record = session.get_one(ExportFile, file_id)
        record.attempts += 1
        record.last_error = error[:2000]
        if final:
            record.state = "failed"
        record.updated_at = utcnow()

