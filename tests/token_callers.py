"""A process of N threads that all ask for the same user token at one instant (tests only).

Usage: python -m tests.token_callers THREADS START_AT  (settings from the environment)
Prints one JSON line: {"tokens": [...], "errors": [...]}.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from bot.config import load_settings
from bot.services import build_services


def main() -> None:
    threads, start_at = int(sys.argv[1]), float(sys.argv[2])
    services = build_services(load_settings())
    tokens = services.user_tokens
    results: list[str] = []
    errors: list[str] = []

    def call() -> None:
        time.sleep(max(0.0, start_at - time.time()))
        try:
            results.append(tokens.get_valid_user_token())
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
