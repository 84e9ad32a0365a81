"""One process that sends one bot message (tests only): does it fetch its own tenant token?

Usage: python -m tests.tenant_caller CHAT_ID  (settings from the environment)
"""

from __future__ import annotations

import sys

from bot.config import load_settings
from bot.im import send_text
from bot.services import build_services


def main() -> None:
    services = build_services(load_settings())
    send_text(services.feishu, sys.argv[1], "hello from a worker", uuid=f"tenant-caller-{sys.argv[2]}")
    services.close()


if __name__ == "__main__":
    main()
