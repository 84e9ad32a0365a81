"""What each chat command does, one function per command: reply, or start the work and answer
with a card that follows it. Each returns a short detail for the audit row, and raises
UsageError (replied as is) for input it cannot act on."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from bot.caches import store
from bot.caches.export import write_table
from bot.caches.lookup import query_table
from bot.caches.query import QueryError
from bot.caches.schedule import enqueue_cache_sync
from bot.caches.sources import SourceError
from bot.chat import live
from bot.chat.access import Origin, readable, require_readable
from bot.chat.cards import notice_card
from bot.chat.parser import Command, UsageError, help_text
from bot.chat.schedule import refresh_soon
from bot.chat.texts import (
    auth_text,
    coze_list_text,
    export_lines,
    pipeline_list_text,
    pipeline_runs_text,
    status_text,
)
from bot.coze.schedule import start_manual_sync
from bot.coze.spec import SpecError
from bot.export import runner
from bot.export.auth import NoExportAuth, load
from bot.export.options import RunOptions
from bot.export.progress import progress
from bot.export.schedule import schedule_plan
from bot.filenames import safe_filename
from bot.im import reply_card, reply_file, reply_text
from bot.models import CozeTemplate
from bot.overview import overview
from bot.pipelines import runs as pipeline_runs
from bot.pipelines import store as pipeline_store
from bot.services import Services

INLINE_ROWS = 20  # more rows than this come back as an xlsx file

Action = Callable[[Services, Command, str, Origin], str | None]  # (services, command, message id, origin)


def help_(services: Services, command: Command, message_id: str, origin: Origin) -> None:
    reply_text(services.feishu, message_id, help_text())


def ping(services: Services, command: Command, message_id: str, origin: Origin) -> None:
    reply_text(services.feishu, message_id, "pong")


def status(services: Services, command: Command, message_id: str, origin: Origin) -> None:
    snapshot = overview(services)
    shown = {s.name for s in readable(services, store.list_sources(services.engine), origin)}
    snapshot["caches_hidden"] = any(c["source"] not in shown for c in snapshot["caches"])
    snapshot["caches"] = [c for c in snapshot["caches"] if c["source"] in shown]
    reply_text(services.feishu, message_id, status_text(snapshot))


def auth_status(services: Services, command: Command, message_id: str, origin: Origin) -> None:
    reply_text(services.feishu, message_id, auth_text(overview(services)["tokens"]))


def sync(services: Services, command: Command, message_id: str, origin: Origin) -> str:
    """Only sources this chat may read are named or synced here."""
    sources = store.list_sources(services.engine)
    if not sources:
        raise UsageError("还没有数据源。请先在服务器上运行 feishu-bridge sources add。")
    names = [s.name for s in readable(services, sources, origin)]
    if command.args:
        wanted = next((s for s in sources if s.name == command.args[0]), None)
        if wanted is None:
            raise UsageError(f"未知数据源 {command.args[0]!r}。可用的数据源：{', '.join(names) or '（无）'}")
        require_readable(services, wanted, origin)
    elif not names:
        raise UsageError("此会话中没有可查看的数据源。")
    chosen = list(command.args) or names
    for name in chosen:
        enqueue_cache_sync(services, name, force=command.force)
    mode = "强制全量" if command.force else "增量"
    text = f"已开始{mode}同步：{', '.join(chosen)}。稍后发送 /status 查看结果。"
    force = {"action": "force_sync", "sources": chosen}
    buttons = None if command.force else [{"text": "强制全量同步", "type": "primary", "value": force}]
    reply_card(services.feishu, message_id, notice_card("缓存同步", text, buttons=buttons))
    return ", ".join(chosen)


def cache(services: Services, command: Command, message_id: str, origin: Origin) -> str:
    """Small results inline; more than INLINE_ROWS rows come back as an xlsx file."""
    source, table = command.args
    where = [f"{k}={v}" for k, v in command.filters.items()]
    try:
        require_readable(services, store.get_source(services.engine, source), origin)
        found = query_table(services.engine, source, table, where)
    except SourceError as exc:
        raise UsageError(f"找不到缓存表：{exc}") from None
    except QueryError as exc:
        raise UsageError(f"筛选条件有误：{exc}") from None
    rows, name = found.flat(), found.table.name
    if not rows:
        reply_text(services.feishu, message_id, f"{source}/{name}：没有符合条件的记录。")
        return "0 rows"
    if len(rows) <= INLINE_ROWS:
        names = found.columns[:6]
        lines = [f"{source}/{name}：共 {len(rows)} 条", " | ".join(names)]
        lines += [" | ".join(str(row.get(n, ""))[:30] for n in names) for row in rows]
        reply_text(services.feishu, message_id, "\n".join(lines))
        return f"{len(rows)} rows inline"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{safe_filename(f'{source}-{name}', fallback='cache')}.xlsx"
        write_table(rows, found.columns, path, "xlsx")
        reply_file(services.feishu, message_id, path)
    return f"{len(rows)} rows as xlsx"


def export_start(services: Services, command: Command, message_id: str, origin: Origin) -> str:
    try:
        load(services.engine, services.secret_box)
    except NoExportAuth:
        raise UsageError(
            "尚未配置合同导出的登录信息。请在服务器上运行 feishu-bridge export auth --from-curl。"
        ) from None
    assert command.start is not None and command.end is not None
    start = datetime.combine(command.start, datetime.min.time())
    end = datetime.combine(command.end + timedelta(days=1), datetime.min.time())
    try:
        run_id = runner.create_run(services.engine, start, end, RunOptions.from_settings(services.settings))
    except runner.RunConflict:
        active = runner.active_run_id(services.engine)
        raise UsageError(f"已有进行中的导出（第 {active} 次）。发送 /export status 查看进度。") from None
    schedule_plan(services, run_id)
    answer_with_card(services, message_id, origin.chat_id, live.EXPORT, run_id)
    return f"run {run_id}"


def export_status(services: Services, command: Command, message_id: str, origin: Origin) -> None:
    run_id = runner.active_run_id(services.engine) or runner.latest_run_id(services.engine)
    if run_id is None:
        text = "还没有导出任务。发送 /export start 2022-01-01 2022-03-31 开始。"
    else:
        text = "\n".join(export_lines(progress(services.engine, run_id)))
    reply_text(services.feishu, message_id, text)


def export_retry(services: Services, command: Command, message_id: str, origin: Origin) -> None:
    run_id = runner.active_run_id(services.engine) or runner.latest_run_id(services.engine)
    if run_id is None:
        raise UsageError("还没有导出任务可以重试。")
    if command.args:
        window = int(command.args[0])
        try:
            runner.retry_window(services.engine, run_id, window)
        except (runner.RunConflict, ValueError, LookupError) as exc:
            raise UsageError(f"无法重试窗口 {window}：{exc}") from None
        wanted = [window]
    else:
        wanted = runner.retry_failed(services.engine, run_id)
    if not wanted:
        text = f"第 {run_id} 次导出没有失败的窗口。"
    else:
        schedule_plan(services, run_id)
        text = f"已重新排队第 {run_id} 次导出的窗口：{', '.join(map(str, wanted))}。"
    reply_text(services.feishu, message_id, text)


def coze_list(services: Services, command: Command, message_id: str, origin: Origin) -> None:
    reply_text(services.feishu, message_id, coze_list_text(overview(services)["coze"]["templates"]))


def coze_sync(services: Services, command: Command, message_id: str, origin: Origin) -> str:
    wanted = command.args[0]
    with services.sessions() as session:
        found = session.scalars(
            select(CozeTemplate).where((CozeTemplate.uuid == wanted) | (CozeTemplate.config_title == wanted))
        ).all()
    if len(found) != 1:
        raise UsageError(f"找不到唯一的 Coze 模板 {wanted!r}。发送 /coze list 查看模板。")
    try:
        sync = start_manual_sync(services, found[0].uuid, 100, None)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    answer_with_card(services, message_id, origin.chat_id, live.COZE_SYNC, sync.id)
    return f"manual sync {sync.id}"


def pipeline_list(services: Services, command: Command, message_id: str, origin: Origin) -> None:
    reply_text(services.feishu, message_id, pipeline_list_text(pipeline_store.list_all(services.engine)))


def pipeline_status(services: Services, command: Command, message_id: str, origin: Origin) -> None:
    name = command.args[0] if command.args else None
    recent = pipeline_runs.recent(services.engine, name, 5)
    reply_text(services.feishu, message_id, pipeline_runs_text(recent))


def pipeline_run(services: Services, command: Command, message_id: str, origin: Origin) -> str:
    name = command.args[0]
    try:
        run_id = pipeline_runs.start(services, name, command.start, "chat", requested_by=origin.open_id,
                                      chat_id=origin.chat_id, message_id=message_id)
    except pipeline_store.PipelineNotFound:
        raise UsageError(f"没有名为 {name!r} 的管道。发送 /pipeline list 查看全部管道。") from None
    except pipeline_runs.RunActive as exc:
        raise UsageError(f"管道 {name} 正在运行（#{exc.run_id}），请等它结束。") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    answer_with_card(services, message_id, origin.chat_id, live.PIPELINE, run_id)
    return f"pipeline run {run_id}"


def answer_with_card(services: Services, message_id: str, chat_id: str, kind: str, ref_id: int) -> None:
    """Reply with the work's card and keep it following the work."""
    card = live.card_for(services, kind, ref_id)
    card_id = reply_card(services.feishu, message_id, card.content)
    live.track(services, card_id, chat_id, kind, ref_id, card)
    refresh_soon(services)


ACTIONS: dict[tuple[str, str], Action] = {
    ("help", ""): help_,
    ("ping", ""): ping,
    ("status", ""): status,
    ("auth", "status"): auth_status,
    ("sync", ""): sync,
    ("cache", ""): cache,
    ("export", "start"): export_start,
    ("export", "status"): export_status,
    ("export", "retry"): export_retry,
    ("coze", "list"): coze_list,
    ("coze", "sync"): coze_sync,
    ("pipeline", "list"): pipeline_list,
    ("pipeline", "status"): pipeline_status,
    ("pipeline", "run"): pipeline_run,
}
