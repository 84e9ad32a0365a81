"""A process of N threads that all ask for one provider's token at one instant (tests only).

Usage: python -m tests.provider_callers PROVIDER THREADS START_AT [REJECTED]  (settings from the
environment). Prints one JSON line: {"tokens": [...], "errors": [...]}.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from bot.config import load_settings
from bot.services import build_services


def main() -> None:
    provider, threads, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rejected = sys.argv[4] if len(sys.argv) > 4 else None
    services = build_services(load_settings())
    tokens = services.provider_tokens
    results: list[str] = []
    errors: list[str] = []

    def call() -> None:
        time.sleep(max(0.0, start_at - time.time()))
        try:
            results.append(tokens.get_valid_token(provider, rejected=rejected))
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
