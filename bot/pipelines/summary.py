"""A run's result as stored JSON, as the text the user's log shows, and as a card (pure).

    ✅ 同步日期：2026-02-15
    成功账户：6/7
    总记录数：13

The card follows the house style (bot/chat/cards.py: card JSON 1.0, `update_multi`, header
colour by outcome) but is built here, so the chat package can show pipeline cards without the
pipelines package importing chat.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from bot.pipelines.verify import Verification, fmt_number

MAX_LISTED = 10  # mismatches / missing groups listed in a text before "…"


@dataclass(frozen=True)
class Counts:
    fetched: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    calls: int = 0
    rounds: int = 0  # write rounds (a second one repaired a lost write)
    kept: int = 0  # rows the source did not give that were kept (a failed group, an empty day)


def _range(first: date, last: date) -> str:
    return first.isoformat() if first == last else f"{first.isoformat()} ~ {last.isoformat()}"


def summary_doc(pipeline: str, first: date, last: date, counts: Counts, verification: Verification, *,
                label: str, grouped: bool, rows_per_day: dict[str, int] | None = None) -> dict[str, Any]:
    """What `pipeline_runs.summary` stores (JSON-safe): enough to rebuild the text and card."""
    return {
        "pipeline": pipeline,
        "date_from": first.isoformat(),
        "date_to": last.isoformat(),
        "ok": verification.ok,
        "label": label,
        "grouped": grouped,
        "groups_ok": verification.groups_ok,
        "groups_total": verification.groups_total,
        "records": verification.found_rows,
        "expected_records": verification.expected_rows,
        "sums": verification.found_sums,
        "missing_groups": verification.missing_groups,
        "failed_groups": verification.failed_groups,
        "mismatches": verification.mismatches(label),
        "groups": [{"group": g.group, "expected": g.expected_rows, "found": g.found_rows,
                    "sums": g.found_sums} for g in verification.groups],
        "rows_per_day": rows_per_day or {},
        "counts": asdict(counts),
    }


def _listed(items: list[str]) -> str:
    shown = items[:MAX_LISTED]
    return "、".join(shown) + (f" 等 {len(items)} 个" if len(items) > MAX_LISTED else "")


def result_lines(doc: dict[str, Any]) -> list[str]:
    """The result as lines, the user's own format first."""
    first, last = date.fromisoformat(doc["date_from"]), date.fromisoformat(doc["date_to"])
    mark = "✅" if doc["ok"] else "❌"
    lines = [f"{mark} 同步日期：{_range(first, last)}"]
    if doc["grouped"]:
        lines.append(f"成功{doc['label']}：{doc['groups_ok']}/{doc['groups_total']}")
    lines.append(f"总记录数：{doc['records']}")
    for name, total in doc["sums"].items():
        lines.append(f"{name}合计：{fmt_number(total)}")
    counts = doc["counts"]
    lines.append(f"写入：新增 {counts['created']} · 更新 {counts['updated']} · 删除 {counts['deleted']}"
                 f"（API 调用 {counts['calls']} 次）")
    if counts.get("kept"):
        lines.append(f"保留 {counts['kept']} 条：来源本次未返回（获取失败或无数据），未删除")
    if doc["missing_groups"]:
        lines.append(f"无数据的{doc['label']}：{_listed(doc['missing_groups'])}")
    if doc["failed_groups"]:
        failed = [f"{g}（{why}）" for g, why in doc["failed_groups"].items()]
        lines.append(f"获取失败的{doc['label']}：{_listed(failed)}")
    if doc["mismatches"]:
        lines.append("校验不一致：")
        lines += [f"· {m}" for m in doc["mismatches"][:MAX_LISTED]]
    return lines


def result_text(doc: dict[str, Any]) -> str:
    return "\n".join(result_lines(doc))


def failure_lines(pipeline: str, run_id: int, first: date, last: date, error: str) -> list[str]:
    return [f"❌ 同步日期：{_range(first, last)}", f"数据管道 {pipeline}（run {run_id}）失败：", error[:1000]]


def card(title: str, lines: list[str], *, ok: bool, partial: bool = False) -> dict[str, Any]:
    """A result card in the house style: green when verified, orange when some groups had no
    data, red when the run failed or did not verify."""
    template = "red" if not ok else "orange" if partial else "green"
    return {
        "config": {"wide_screen_mode": True, "update_multi": True},
        "header": {"title": {"tag": "plain_text", "content": title}, "template": template},
        "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": "\n".join(lines)}}],
    }


def result_card(doc: dict[str, Any]) -> dict[str, Any]:
    partial = bool(doc["missing_groups"] or doc["failed_groups"])
    return card(f"数据同步 · {doc['pipeline']}", result_lines(doc), ok=doc["ok"], partial=partial)


def failure_card(pipeline: str, run_id: int, first: date, last: date, error: str) -> dict[str, Any]:
    return card(f"数据同步 · {pipeline}", failure_lines(pipeline, run_id, first, last, error), ok=False)
