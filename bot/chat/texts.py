"""The bot's reply texts (Chinese, short), built from snapshots: no I/O, unit-tested directly."""

from __future__ import annotations

from typing import Any

from bot.caches.visibility import Visibility
from bot.export.progress import Progress

EXPORT_STATES = {"running": "进行中", "paused": "已暂停", "done": "已完成", "cancelled": "已取消"}


def export_state(status: str) -> str:
    return EXPORT_STATES.get(status, status)


def status_text(snapshot: dict[str, Any]) -> str:
    """The reply to /status, from `bot.overview.overview`'s snapshot."""
    lines = ["📊 Feishu Bridge 状态"]
    caches = snapshot["caches"]
    if caches:
        stale = [c["source"] for c in caches if c["stale"]]
        lines.append(
            f"缓存：{len(caches)} 个数据源" + (f"，待更新：{', '.join(stale)}" if stale else "，均为最新")
        )
        for c in caches:
            if (c.get("events") or "").startswith("no change events"):
                lines.append(f"· {c['source']}：{c['events']}")
    elif snapshot.get("caches_hidden"):
        lines.append("缓存：此会话中没有可查看的数据源")
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
    export: Progress | None = snapshot["export"]
    if export:
        lines.append(
            f"导出：第 {export.run} 次，{export_state(export.status)}，"
            f"{export.fraction * 100:.0f}%，已导出 {export.records} 条"
        )
    else:
        lines.append("导出：暂无")
    coze = snapshot["coze"]
    lines.append(f"Coze：{len(coze['templates'])} 个模板，待投递 {coze['backlog']}，死信 {coze['dead']}")
    pipelines = snapshot.get("pipelines") or []
    if pipelines:
        failing = [p["name"] for p in pipelines if p["state"] == "failed"]
        lines.append(f"管道：{len(pipelines)} 个" + (f"，上次失败：{'、'.join(failing)}" if failing else ""))
    failed = snapshot["events"]["by_status"].get("failed", 0)
    lines.append(f"事件：失败 {failed}")
    return "\n".join(lines)


def export_lines(progress: Progress) -> list[str]:
    """An export run's progress as chat lines (the /export status reply and the card body)."""
    lines = [
        f"范围：{progress.range[0][:10]} 至 {progress.range[1][:10]}（不含）",
        f"状态：{export_state(progress.status)}"
        + (f"（{progress.pause_reason}）" if progress.pause_reason else ""),
        f"窗口：已完成 {progress.windows_done} / {progress.total_windows}，已导出 {progress.records} 条记录，"
        f"导出调用 {progress.calls} 次",
    ]
    for problem in progress.problems[:5]:
        lines.append(
            f"⚠ 窗口 {problem.window}（{problem.start[:10]}～{problem.end[:10]}）"
            f"{problem.state}：{problem.reason or ''}"
        )
    return lines


def auth_text(tokens: list[dict[str, Any]]) -> str:
    """The reply to /auth status, from the snapshot's `tokens`."""
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


def coze_list_text(templates: list[dict[str, Any]]) -> str:
    """The reply to /coze list, from the snapshot's `coze.templates`."""
    if not templates:
        return "还没有 Coze 同步模板（POST /api/v1/coze-sync-templates/ 或 feishu-bridge coze create）。"
    lines = ["Coze 同步模板："]
    for t in templates:
        lines.append(
            f"· {t['title']}（{t['table']}）{t['status']}，待投递 {t['pending']}，已投递 {t['delivered']}，"
            f"死信 {t['dead']}｜{t['uuid']}"
        )
    return "\n".join(lines)


def not_visible_text(source: str, visibility: Visibility, chat_id: str) -> str:
    """The refusal of a cached source this chat may not read: who may, and what an admin runs to
    open it to this chat (the `chats` list it already has, plus this one)."""
    who = {
        "allowed": "CHAT_ALLOWED_CHATS 中的会话，以及管理员与机器人的私聊",
        "owner": "其用户令牌的所有者和管理员，且仅限与机器人的私聊",
    }.get(visibility.kind) or f"会话 {', '.join(visibility.chats) or '（无）'}，以及管理员与机器人的私聊"
    chats = ",".join(dict.fromkeys([*visibility.chats, chat_id]))
    return (
        f"数据源 {source} 不能在此会话中查看。可以查看它的是：{who}。"
        "如需开放给此会话，请管理员在服务器上运行："
        f"feishu-bridge sources visibility {source} chats --chats {chats}"
    )


def pipeline_list_text(found: list[Any]) -> str:
    """The reply to /pipeline list, from `bot.pipelines.store.list_all`."""
    if not found:
        return "还没有管道（feishu-bridge pipeline add 定义.json）。"
    lines = ["管道："]
    for p in found:
        last = f"#{p.last_run_id} {p.last_run_state}" if p.last_run_id else "尚未运行"
        lines.append(f"• {p.name}{'' if p.enabled else '（已停用）'} — {p.spec.schedule}，上次：{last}")
    return "\n".join(lines)


def pipeline_runs_text(recent: list[Any]) -> str:
    """The reply to /pipeline status, from `bot.pipelines.runs.recent`."""
    if not recent:
        return "还没有管道运行记录。"
    lines = []
    for r in recent:
        span = f"{r.date_from}" + ("" if r.date_from == r.date_to else f"..{r.date_to}")
        line = f"#{r.id} {r.pipeline} {span}：{r.state}，新增 {r.created} 更新 {r.updated} 删除 {r.deleted}"
        lines.append(line + (f"（{r.error[:120]}）" if r.error else ""))
    return "\n".join(lines)
