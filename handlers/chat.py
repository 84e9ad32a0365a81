"""Chat commands end to end: who may run them, the audit row, and what each one does.

Runs in a worker (the webhook only records the event). Replies are Chinese; long-running
commands answer with an interactive card that `jobs/chat.py` keeps patching until the work ends.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.im import reply_card, reply_text
from bot.models import ChatCard, ChatCommand
from bot.services import Services
from handlers.commands import Command, UsageError, help_text, parse, text_of_message

log = logging.getLogger(__name__)

REFUSAL = "抱歉，你没有使用此机器人的权限。请联系管理员把你的 open_id（{open_id}）加入 CHAT_ADMINS。"
INLINE_ROWS = 20


def allowed(services: Services, open_id: str, chat_id: str) -> bool:
    settings = services.settings
    return open_id in settings.chat_admins or chat_id in settings.chat_allowed_chats


def on_text(services: Services, event: dict[str, Any]) -> str:
    message = event.get("message") or {}
    sender = ((event.get("sender") or {}).get("sender_id") or {}).get("open_id", "")
    text = text_of_message(message.get("content"))
    message_id, chat_id = message.get("message_id", ""), message.get("chat_id", "")
    try:
        command = parse(text)
    except UsageError as exc:
        command, usage = None, str(exc)
    else:
        usage = None
        if command is None:
            return "ignored: not a command"
    if not record_once(services, message_id, chat_id, sender, text):
        return "ignored: command already handled"
    public = command is not None and command.name == "ping"  # a liveness check reveals nothing
    if not public and not allowed(services, sender, chat_id):
        reply_text(services.feishu, message_id, REFUSAL.format(open_id=sender))
        set_outcome(services, message_id, None, "refused", "not in CHAT_ADMINS / CHAT_ALLOWED_CHATS")
        return "refused"
    if usage is not None:
        reply_text(services.feishu, message_id, usage)
        set_outcome(services, message_id, None, "usage", usage)
        return "usage error replied"
    assert command is not None
    try:
        outcome, detail = execute(services, command, message_id, chat_id)
    except UsageError as exc:
        reply_text(services.feishu, message_id, str(exc))
        set_outcome(services, message_id, command.label, "usage", str(exc))
        return "usage error replied"
    except Exception as exc:
        log.exception("chat command failed", extra={"command": command.label})
        set_outcome(services, message_id, command.label, "error", f"{type(exc).__name__}: {exc}"[:500])
        raise  # the event job retries; the reply uuid keeps Feishu from showing it twice
    set_outcome(services, message_id, command.label, outcome, detail)
    return f"{command.label}: {outcome}"


def record_once(services: Services, message_id: str, chat_id: str, open_id: str, text: str) -> bool:
    """Record the command (unique per message); False if it was recorded and finished before."""
    with services.sessions() as session, session.begin():
        row = session.scalar(select(ChatCommand).where(ChatCommand.message_id == message_id))
        if row is not None:
            return row.outcome in ("received", "error")  # a retried job that failed part-way goes on
        session.add(
            ChatCommand(
                message_id=message_id,
                chat_id=chat_id,
                open_id=open_id,
                text=text[:1000],
                outcome="received",
                created_at=datetime.now(UTC),
            )
        )
    return True


def set_outcome(
    services: Services, message_id: str, command: str | None, outcome: str, detail: str | None
) -> None:
    with services.sessions() as session, session.begin():
        row = session.scalar(select(ChatCommand).where(ChatCommand.message_id == message_id))
        if row is not None:
            row.command, row.outcome, row.detail = command, outcome, (detail or "")[:1000] or None


def execute(services: Services, command: Command, message_id: str, chat_id: str) -> tuple[str, str | None]:
    feishu = services.feishu
    match command.name, command.action:
        case ("help", _):
            reply_text(feishu, message_id, help_text())
        case ("ping", _):
            reply_text(feishu, message_id, "pong")
        case ("status", _):
            from bot.overview import overview, status_text

            reply_text(feishu, message_id, status_text(overview(services)))
        case ("auth", _):
            reply_text(feishu, message_id, _auth_text(services))
        case ("sync", _):
            return "ok", _sync(services, command, message_id)
        case ("cache", _):
            return "ok", _cache(services, command, message_id)
        case ("export", "start"):
            return "ok", _export_start(services, command, message_id, chat_id)
        case ("export", "status"):
            reply_text(feishu, message_id, _export_status_text(services))
        case ("export", "retry"):
            reply_text(feishu, message_id, _export_retry(services, command))
        case ("coze", "list"):
            reply_text(feishu, message_id, _coze_list_text(services))
        case ("coze", "sync"):
            return "ok", _coze_sync(services, command, message_id, chat_id)
    return "ok", None


def _auth_text(services: Services) -> str:
    from bot.overview import overview

    tokens = overview(services)["tokens"]
    if not tokens:
        return "尚无用户授权。请在服务器上运行 feishu-bridge auth login。"
    lines = ["用户令牌："]
    for t in tokens:
        state = "正常" if t["status"] == "active" else "需要重新授权"
        lines.append(
            f"· {t['name'] or t['subject']}：{state}；访问令牌剩余 {t['access_hours_left']} 小时，"
            f"刷新令牌剩余 {t['refresh_hours_left']} 小时"
            + (f"；最近错误：{t['last_error']}" if t["last_error"] else "")
        )
    return "\n".join(lines)


def _sync(services: Services, command: Command, message_id: str) -> str:
    from bot.caches import store
    from bot.cards import notice_card
    from jobs.caches import enqueue_cache_sync

    names = [s.name for s in store.list_sources(services.engine)]
    if not names:
        raise UsageError("还没有数据源。请先在服务器上运行 feishu-bridge sources add。")
    if command.args and command.args[0] not in names:
        raise UsageError(f"未知数据源 {command.args[0]!r}。可用的数据源：{', '.join(names)}")
    chosen = list(command.args) or names
    for name in chosen:
        enqueue_cache_sync(services, name, force=command.force)
    mode = "强制全量" if command.force else "增量"
    text = f"已开始{mode}同步：{', '.join(chosen)}。稍后发送 /status 查看结果。"
    force = {"action": "force_sync", "sources": chosen}
    buttons = None if command.force else [{"text": "强制全量同步", "type": "primary", "value": force}]
    reply_card(services.feishu, message_id, notice_card("缓存同步", text, buttons=buttons))
    return ", ".join(chosen)


def _cache(services: Services, command: Command, message_id: str) -> str:
    """Small results inline; more than INLINE_ROWS rows come back as an xlsx file."""
    import tempfile
    from pathlib import Path

    from bot.caches import store
    from bot.caches.export import flat_rows, select_rows, write_table
    from bot.caches.query import QueryError, parse_where
    from bot.caches.sources import SourceError
    from bot.im import reply_file

    source, table = command.args
    try:
        found_source, found_table = store.find_table(services.engine, source, table)
    except SourceError as exc:
        raise UsageError(f"找不到缓存表：{exc}") from None
    fields = store.table_fields(services.engine, found_source.id, found_table.table_id)
    types = {f.name: f.type for f in fields}
    try:
        conditions = parse_where([f"{k}={v}" for k, v in command.filters.items()], list(types))
    except QueryError as exc:
        raise UsageError(f"筛选条件有误：{exc}") from None
    records = store.iter_records(services.engine, found_source.id, found_table.table_id)
    rows = flat_rows(select_rows(records, types, conditions), list(types), types)
    if not rows:
        reply_text(services.feishu, message_id, f"{source}/{found_table.name}：没有符合条件的记录。")
        return "0 rows"
    if len(rows) <= INLINE_ROWS:
        names = list(types)[:6]
        lines = [f"{source}/{found_table.name}：共 {len(rows)} 条", " | ".join(names)]
        lines += [" | ".join(str(row.get(n, ""))[:30] for n in names) for row in rows]
        reply_text(services.feishu, message_id, "\n".join(lines))
        return f"{len(rows)} rows inline"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{source}-{found_table.name}.xlsx"
        write_table(rows, list(types), path, "xlsx")
        reply_file(services.feishu, message_id, path)
    return f"{len(rows)} rows as xlsx"


def _export_start(services: Services, command: Command, message_id: str, chat_id: str) -> str:
    from bot.export import runner
    from bot.export.auth import NoExportAuth, load
    from jobs.chat import card_for, refresh_soon
    from jobs.export import schedule_plan

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
        run_id = runner.create_run(
            services.engine, start, end, runner.RunOptions.from_settings(services.settings)
        )
    except runner.RunConflict:
        active = runner.active_run_id(services.engine)
        raise UsageError(f"已有进行中的导出（第 {active} 次）。发送 /export status 查看进度。") from None
    schedule_plan(services, run_id)
    card = card_for(services, "export", run_id)
    card_id = reply_card(services.feishu, message_id, card.content)
    _track(services, card_id, chat_id, "export", run_id, card)
    refresh_soon(services)
    return f"run {run_id}"


def _export_status_text(services: Services) -> str:
    from bot.export import runner
    from bot.overview import export_lines

    run_id = runner.active_run_id(services.engine) or runner.latest_run_id(services.engine)
    if run_id is None:
        return "还没有导出任务。发送 /export start 2022-01-01 2022-03-31 开始。"
    return "\n".join(export_lines(runner.progress(services.engine, run_id)))


def _export_retry(services: Services, command: Command) -> str:
    from bot.export import runner
    from jobs.export import schedule_plan

    run_id = runner.active_run_id(services.engine) or runner.latest_run_id(services.engine)
    if run_id is None:
        raise UsageError("还没有导出任务可以重试。")
    failed = [
        p["window"] for p in runner.progress(services.engine, run_id)["problems"] if p["state"] == "failed"
    ]
    wanted = [int(command.args[0])] if command.args else failed
    if not wanted:
        return f"第 {run_id} 次导出没有失败的窗口。"
    for window in wanted:
        try:
            runner.retry_window(services.engine, run_id, window)
        except (runner.RunConflict, ValueError, LookupError) as exc:
            raise UsageError(f"无法重试窗口 {window}：{exc}") from None
    schedule_plan(services, run_id)
    return f"已重新排队第 {run_id} 次导出的窗口：{', '.join(map(str, wanted))}。"


def _coze_list_text(services: Services) -> str:
    from bot.overview import overview

    templates = overview(services)["coze"]["templates"]
    if not templates:
        return "还没有 Coze 同步模板（POST /api/v1/coze-sync-templates/ 或 feishu-bridge coze create）。"
    lines = ["Coze 同步模板："]
    for t in templates:
        lines.append(
            f"· {t['title']}（{t['table']}）{t['status']}，待投递 {t['pending']}，已投递 {t['delivered']}，"
            f"死信 {t['dead']}｜{t['uuid']}"
        )
    return "\n".join(lines)


def _coze_sync(services: Services, command: Command, message_id: str, chat_id: str) -> str:
    from bot.coze import manual
    from bot.coze.spec import SpecError
    from bot.models import CozeTemplate
    from bot.queue import QueueName
    from jobs.chat import card_for, refresh_soon
    from jobs.coze import coze_manual_sync

    wanted = command.args[0]
    with services.sessions() as session:
        found = session.scalars(
            select(CozeTemplate).where((CozeTemplate.uuid == wanted) | (CozeTemplate.config_title == wanted))
        ).all()
    if len(found) != 1:
        raise UsageError(f"找不到唯一的 Coze 模板 {wanted!r}。发送 /coze list 查看模板。")
    try:
        sync = manual.create(services, found[0].uuid, 100, None)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    services.queues[QueueName.COZE].enqueue(
        coze_manual_sync, sync.id, job_timeout=3600, job_id=f"coze-manual-sync-{sync.id}"
    )
    card = card_for(services, "coze_sync", sync.id)
    card_id = reply_card(services.feishu, message_id, card.content)
    _track(services, card_id, chat_id, "coze_sync", sync.id, card)
    refresh_soon(services)
    return f"manual sync {sync.id}"


def _track(services: Services, card_message_id: str, chat_id: str, kind: str, ref_id: int, card) -> None:
    with services.sessions() as session, session.begin():
        session.add(
            ChatCard(
                message_id=card_message_id,
                chat_id=chat_id,
                kind=kind,
                ref_id=ref_id,
                state="final" if card.final else "live",
                content_hash=card.digest,
                updated_at=datetime.now(UTC),
            )
        )
