"""A process that runs several pipeline runs at one instant, one thread each (tests only).

Usage: python -m tests.pipeline_runners START_AT RUN_ID…  (settings from the environment).
Prints one JSON line: {"outcomes": {run_id: state}, "errors": [...]}.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from bot.config import load_settings
from bot.pipelines import runner
from bot.services import build_services, install


def main() -> None:
    start_at, run_ids = float(sys.argv[1]), [int(a) for a in sys.argv[2:]]
    services = build_services(load_settings())
    install(services)
    outcomes: dict[int, str] = {}
    errors: list[str] = []

    def run(run_id: int) -> None:
        time.sleep(max(0.0, start_at - time.time()))
        try:
            outcome = runner.run_pipeline(services, run_id)
            ok = outcome.state == "succeeded"
            outcomes[run_id] = outcome.state if ok else f"{outcome.state}: {outcome.text}"
        except Exception as exc:  # reported, and the test fails on any
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"outcomes": outcomes, "errors": errors}), flush=True)


if __name__ == "__main__":
    main()
