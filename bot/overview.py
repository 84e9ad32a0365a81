"""One snapshot of everything an operator watches — caches, user tokens, the export run, Coze
deliveries, events — for `/status` in chat (bot/chat/texts.py) and the dashboard. Reads the
database only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

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

    from bot.export.progress import window_list
    from bot.models import ChatCommand

    export = snapshot["export"]
    windows = window_list(services.engine, export.run) if export else []
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
    from bot.export.progress import progress
    from bot.models import CozeDelivery, CozeTemplate, EventReceipt

    now = datetime.now(UTC)
    engine = services.engine
    caches = store.summary(engine)
    grants = services.user_tokens.grants()  # the token manager is the one reader of grants
    provider_grants = services.provider_tokens.grants()
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
    export = progress(engine, run_id) if run_id else None
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
                "events": c["events"],
                "records": sum(t["records"] or 0 for t in c["tables"]),
            }
            for c in caches
        ],
        "tokens": [
            {
                "provider": g.provider,
                "subject": g.subject,
                "name": g.display_name,
                "status": g.status,
                "access_hours_left": _hours_left(g.expires_at, now),
                "refresh_hours_left": _hours_left(g.refresh_expires_at, now),
                "last_error": g.last_error,
            }
            for g in [*grants, *provider_grants]
        ],
        "pipelines": _pipelines(engine),
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


def _pipelines(engine: Engine) -> list[dict[str, Any]]:
    """Each pipeline's newest run: its queued or running one, else the last that finished (the
    pipeline row names it, however many other runs came since)."""
    from bot.pipelines import runs, store

    found = store.list_all(engine)
    active = runs.active_runs(engine)
    newest = {p.name: active.get(p.name) or p.last_run_id for p in found}
    details = runs.by_ids(engine, [run_id for run_id in newest.values() if run_id])
    out = []
    for p in found:
        run = details.get(newest[p.name]) if newest[p.name] else None
        out.append({
            "name": p.name, "enabled": p.enabled, "schedule": p.spec.schedule,
            # a run trimmed by retention: what the pipeline row says of it
            "run": run.id if run else p.last_run_id, "state": run.state if run else p.last_run_state,
            "days": f"{run.date_from}" + ("" if run.date_from == run.date_to else f" .. {run.date_to}")
            if run else "",
            "written": f"+{run.created} ~{run.updated} -{run.deleted}" if run else "",
            "result": (run.summary or {}).get("ok") if run else None, "error": run.error if run else None,
        })
    return out
