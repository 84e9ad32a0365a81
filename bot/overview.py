"""One snapshot of everything an operator watches — caches, user tokens, the export run, Coze
deliveries, events — for `/status` in chat and the dashboard. Reads the database only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from bot.services import Services


def _hours_left(at: datetime | None, now: datetime) -> float | None:
    if at is None:
        return None
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return round((at - now).total_seconds() / 3600, 1)


def overview(services: Services, *, detail: bool = False) -> dict[str, Any]:
    """`detail` adds what only the dashboard shows: the export's windows, failed jobs, recent
    chat commands."""
    snapshot = _summary(services)
    if detail:
        snapshot.update(_detail(services, snapshot))
    return snapshot


def _detail(services: Services, snapshot: dict[str, Any]) -> dict[str, Any]:
    from rq.registry import FailedJobRegistry

    from bot.export import runner
    from bot.models import ChatCommand

    export = snapshot["export"]
    windows = runner.window_list(services.engine, export["run"]) if export else []
    failed_jobs = []
    for name, queue in services.queues.items():
        registry = FailedJobRegistry(queue=queue)
        for job in queue.job_class.fetch_many(registry.get_job_ids(0, 4), connection=services.redis):
            if job is not None:
                reason = (job.exc_info or "").strip().splitlines()
                failed_jobs.append({"queue": name, "id": job.id, "func": job.func_name,
                                    "error": reason[-1][:200] if reason else "",
                                    "at": job.ended_at.isoformat(timespec="seconds") if job.ended_at else ""})
    failed_counts = {name: FailedJobRegistry(queue=q).count for name, q in services.queues.items()}
    with services.sessions() as session:
        commands = session.scalars(select(ChatCommand).order_by(ChatCommand.id.desc()).limit(8)).all()
    return {
        "windows": [{"id": w["id"], "start": w["start"][:16], "end": w["end"][:16], "state": w["state"],
                     "rows": w["rows"]} for w in windows],
        "failed_jobs": failed_jobs,
        "failed_job_counts": failed_counts,
        "commands": [{"at": c.created_at.isoformat(timespec="seconds"), "who": c.open_id, "text": c.text,
                      "outcome": c.outcome} for c in commands],
    }


def _summary(services: Services) -> dict[str, Any]:
    from bot.caches import store
    from bot.coze import outbox
    from bot.export import runner
    from bot.models import CozeDelivery, CozeTemplate, EventReceipt

    now = datetime.now(UTC)
    engine = services.engine
    caches = store.summary(engine)
    grants = services.user_tokens.grants()  # the token manager is the one reader of grants
    with services.sessions() as session:
        templates = list(session.scalars(select(CozeTemplate).order_by(CozeTemplate.id)))
        receipts = dict(
            session.execute(select(EventReceipt.status, func.count()).group_by(EventReceipt.status)).all()
        )
        recent_deliveries = session.scalars(
            select(CozeDelivery).order_by(CozeDelivery.id.desc()).limit(10)
        ).all()
        failed_events = session.scalars(
            select(EventReceipt)
            .where(EventReceipt.status == "failed")
            .order_by(EventReceipt.id.desc())
            .limit(5)
        ).all()
    run_id = runner.active_run_id(engine) or runner.latest_run_id(engine)
    export = runner.progress(engine, run_id) if run_id else None
    counts = outbox.counts(engine)
    return {
        "at": now.isoformat(timespec="seconds"),
        "caches": [
            {
                "source": c["source"],
                "kind": c["kind"],
                "status": c["status"],
                "stale": c["stale"],
                "age_seconds": c["age_seconds"],
                "last_error": c["last_error"],
                "records": sum(t["records"] or 0 for t in c["tables"]),
            }
            for c in caches
        ],
        "tokens": [
            {
                "subject": g.subject,
                "name": g.display_name,
                "status": g.status,
                "access_hours_left": _hours_left(g.expires_at, now),
                "refresh_hours_left": _hours_left(g.refresh_expires_at, now),
                "last_error": g.last_error,
            }
            for g in grants
        ],
        "export": export,
        "coze": {
            "templates": [
                {
                    "uuid": t.uuid,
                    "title": t.config_title,
                    "table": t.table_name,
                    "status": t.status,
                    "enabled": t.enabled,
                    **outbox.counts(engine, t.id),
                }
                for t in templates
            ],
            "backlog": counts["pending"] + counts["claimed"],
            "dead": counts["dead"],
            "recent": [
                {
                    "template": d.template_uuid,
                    "op": d.op,
                    "row": d.row_key,
                    "ok": d.ok,
                    "error": d.error,
                    "at": d.created_at.isoformat(timespec="seconds"),
                }
                for d in recent_deliveries
            ],
        },
        "events": {
            "by_status": receipts,
            "failed": [{"id": r.id, "type": r.event_type, "error": r.last_error} for r in failed_events],
        },
    }


def status_text(snapshot: dict[str, Any]) -> str:
    """The chat reply for /status (Chinese, short)."""
    lines = ["📊 Feishu Bridge 状态"]
    caches = snapshot["caches"]
    if caches:
        stale = [c["source"] for c in caches if c["stale"]]
        lines.append(
            f"缓存：{len(caches)} 个数据源" + (f"，待更新：{', '.join(stale)}" if stale else "，均为最新")
        )
    else:
        lines.append("缓存：尚未添加数据源")
    tokens = snapshot["tokens"]
    if tokens:
        for t in tokens:
            state = "正常" if t["status"] == "active" else "需要重新授权"
            lines.append(
                f"令牌：{t['name'] or t['subject']} {state}，刷新令牌剩余 {t['refresh_hours_left']} 小时"
            )
    else:
        lines.append("令牌：尚无用户授权（feishu-bridge auth login）")
    export = snapshot["export"]
    if export:
        lines.append(
            f"导出：第 {export['run']} 次，{_export_state(export['status'])}，"
            f"{export['fraction'] * 100:.0f}%，已导出 {export['records']} 条"
        )
    else:
        lines.append("导出：暂无")
    coze = snapshot["coze"]
    lines.append(f"Coze：{len(coze['templates'])} 个模板，待投递 {coze['backlog']}，死信 {coze['dead']}")
    failed = snapshot["events"]["by_status"].get("failed", 0)
    lines.append(f"事件：失败 {failed}")
    return "\n".join(lines)


def _export_state(status: str) -> str:
    return {"running": "进行中", "paused": "已暂停", "done": "已完成", "cancelled": "已取消"}.get(
        status, status
    )


def export_lines(progress: dict[str, Any]) -> list[str]:
    """An export run's progress as chat lines (the /export status reply and the card body)."""
    windows = progress["windows"]
    total = sum(windows.values())
    lines = [
        f"范围：{progress['range'][0][:10]} 至 {progress['range'][1][:10]}（不含）",
        f"状态：{_export_state(progress['status'])}"
        + (f"（{progress['pause_reason']}）" if progress.get("pause_reason") else ""),
        f"窗口：已完成 {progress['windows_done']} / {total}，已导出 {progress['records']} 条记录，"
        f"导出调用 {progress['calls']} 次",
    ]
    for problem in progress["problems"][:5]:
        lines.append(
            f"⚠ 窗口 {problem['window']}（{problem['start'][:10]}～{problem['end'][:10]}）"
            f"{problem['state']}：{problem.get('reason') or ''}"
        )
    return lines
