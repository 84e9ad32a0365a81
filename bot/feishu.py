"""The lark-oapi client: built once per process from settings and injected where needed."""

from __future__ import annotations

import lark_oapi as lark

from bot.config import Settings


def build_client(settings: Settings) -> lark.Client:
    return (
        lark.Client.builder()
        .app_id(settings.feishu_app_id or "cli_unset")
        .app_secret(settings.feishu_app_secret.get_secret_value() or "unset")
        .domain(settings.feishu_base_url)
        .log_level(lark.LogLevel.WARNING)
        .build()
    )


class FeishuAPIError(RuntimeError):
    """An open-platform call answered with a non-zero code."""

    def __init__(self, operation: str, code: int | None, msg: str | None, log_id: str | None):
        self.operation = operation
        self.code = code
        self.msg = msg
        self.log_id = log_id
        super().__init__(f"{operation} failed: code={code} msg={msg} log_id={log_id}")


def raise_for_response(operation: str, response) -> None:
    """lark-oapi returns failures as values; turn them into exceptions so RQ retries them."""
    if not response.success():
        raise FeishuAPIError(operation, response.code, response.msg, response.get_log_id())
