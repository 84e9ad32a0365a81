"""Structured logging: JSON lines when not on a TTY, scrubbed of every registered secret."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from bot.config import Settings
from bot.masking import register_secrets, scrub


class ScrubbingJsonFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class ScrubbingTextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class _DropSdkEventTracebacks(logging.Filter):
    """lark-oapi logs a full traceback for every rejected webhook call; we log one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("handle event failed")


def secrets_of(settings: Settings) -> list[str]:
    values = [
        settings.feishu_app_secret.get_secret_value(),
        settings.feishu_encrypt_key.get_secret_value(),
        settings.feishu_verification_token.get_secret_value(),
        settings.admin_token.get_secret_value(),
        *settings.token_encryption_key.get_secret_value().split(","),
    ]
    return [v.strip() for v in values if v.strip()]


def configure_logging(settings: Settings, stream=None) -> None:
    register_secrets(secrets_of(settings))
    stream = stream or sys.stderr
    as_json = settings.log_json if settings.log_json is not None else not stream.isatty()
    handler = logging.StreamHandler(stream)
    if as_json:
        handler.setFormatter(
            ScrubbingJsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            ScrubbingTextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_feishu_bridge", False):
            root.removeHandler(existing)
    handler._feishu_bridge = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())

    lark_logger = logging.getLogger("Lark")
    lark_logger.addFilter(_DropSdkEventTracebacks())
    for h in lark_logger.handlers:
        h.addFilter(_DropSdkEventTracebacks())
    # The SDK installs its own stderr handler; route through ours so lines are scrubbed too.
    lark_logger.handlers = []
    lark_logger.propagate = True
