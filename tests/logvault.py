"""Everything the suite logs, formatted as the product emits it, for the secrets scan.

Installed on the root logger for the whole session (conftest's pytest_configure); child
processes' log files are registered by the helpers that start them. tests/secrets_scan.py reads
it all when the session ends.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bot.logs import ScrubbingJsonFormatter


class LogVault(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.files: list[Path] = []
        self.setFormatter(ScrubbingJsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # logging must never break a test
            self.handleError(record)

    def text(self) -> str:
        parts = list(self.lines)
        parts += [p.read_text(errors="replace") for p in self.files if p.exists()]
        return "\n".join(parts)


VAULT = LogVault()
