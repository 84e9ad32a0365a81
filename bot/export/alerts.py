"""The export's alerts to the admin chat (Chinese; once per condition, see bot/alerts.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from bot.alerts import raise_alert


def paused(engine: Engine, run_id: int, auth_version: str) -> None:
    """The export endpoint refused the stored session: a new curl is needed (once per session)."""
    raise_alert(
        engine,
        key=f"export-paused:{run_id}:{auth_version}",
        kind="export_paused",
        message=f"合同协同导出已暂停（run {run_id}）：导出接口拒绝了当前登录态。"
        "请重新复制 curl 并执行 "
        "`feishu-bridge export auth --from-curl FILE`，然后 `feishu-bridge export resume`。",
    )


def bad_file(engine: Engine, file_id: int, message_id: str, error: Exception) -> None:
    raise_alert(
        engine,
        key=f"export-bad-file:{file_id}",
        kind="export_bad_file",
        message=f"导出文件无法读取（message {message_id}）：{error}",
    )


def unexportable(engine: Engine, window_id: int | None, start: datetime, end: datetime) -> None:
    raise_alert(
        engine,
        key=f"export-unexportable:{window_id}",
        kind="export_unexportable",
        message=f"导出窗口 {start} ~ {end} 在最小粒度下仍达到 1000 条上限，无法完整导出；"
        "请配置更细的时间粒度（EXPORT_FINER_BOUNDS）或额外筛选条件。",
    )
