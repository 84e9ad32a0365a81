"""Pipeline alerts to the admin chat (Chinese; once per condition, see bot/alerts.py)."""

from __future__ import annotations

from sqlalchemy import Engine

from bot.alerts import raise_alert


def run_failed(engine: Engine, run_id: int, pipeline: str, error: str) -> None:
    raise_alert(
        engine,
        key=f"pipeline-failed:{run_id}",
        kind="pipeline_failed",
        message=f"数据管道 {pipeline} 运行失败（run {run_id}）：{error[:1500]}",
    )


def not_verified(engine: Engine, run_id: int, pipeline: str, mismatches: list[str]) -> None:
    raise_alert(
        engine,
        key=f"pipeline-unverified:{run_id}",
        kind="pipeline_unverified",
        message=f"数据管道 {pipeline}（run {run_id}）写入后校验不一致：\n" + "\n".join(mismatches[:10]),
    )


def card_not_sent(engine: Engine, run_id: int, pipeline: str, chat_id: str, error: str) -> None:
    raise_alert(
        engine,
        key=f"pipeline-card:{run_id}",
        kind="pipeline_card",
        message=f"数据管道 {pipeline}（run {run_id}）的结果卡片未能发到群 {chat_id}：{error[:500]}",
    )
