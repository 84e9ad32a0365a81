"""A process of N threads that all ask for the same token at one instant (tests only): a Feishu
user token, or an external provider's.

Usage: python -m tests.token_callers THREADS START_AT [PROVIDER [REJECTED]]  (settings from the
environment). Prints one JSON line: {"tokens": [...], "errors": [...]}.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable

from bot.config import load_settings
from bot.services import build_services


def main() -> None:
    threads, start_at = int(sys.argv[1]), float(sys.argv[2])
    provider = sys.argv[3] if len(sys.argv) > 3 else None
    rejected = sys.argv[4] if len(sys.argv) > 4 else None
    services = build_services(load_settings())
    get: Callable[[], str]
    if provider is None:
        get = services.user_tokens.get_valid_user_token
    else:
        def get() -> str:
            return services.provider_tokens.get_valid_token(provider, rejected=rejected)
    results: list[str] = []
    errors: list[str] = []

    def call() -> None:
        time.sleep(max(0.0, start_at - time.time()))
        try:
            results.append(get())
        except Exception as exc:  # reported, and the test fails on any
            errors.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps({"tokens": results, "errors": errors}), flush=True)


if __name__ == "__main__":
    main()
