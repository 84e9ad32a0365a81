"""Deliberately failing end-to-end tests — not part of the suite (no `test_` file name):
tests/test_cleanup.py runs this file in a pytest of its own and then looks for leftovers.

The first fails with its whole stack up (gunicorn master and worker, an RQ worker with a job
running in its work horse, which sits in a process group of its own, and cron) and no
try/finally of its own; the second fails while its stack starts. Each notes the pids it saw.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.job import JobStatus

from tests import processes
from tests.stack import BridgeStack

PIDS = Path(os.environ.get("FB_PROBE_PIDS", "/dev/null"))


def _note(pids: list[int]) -> None:
    with PIDS.open("a") as out:
        out.write("".join(f"{pid}\n" for pid in pids))


def _stack(tmp_path, redis_url, sandbox) -> BridgeStack:
    base_url, _ = sandbox
    return BridgeStack(tmp_path, f"sqlite:///{tmp_path / 'bridge.db'}", redis_url, base_url,
                       web_workers=1, web_threads=4, workers=1, cron=True)


def test_fails_with_its_stack_running(tmp_path, redis_url, sandbox):
    _stack(tmp_path, redis_url, sandbox).start()
    job = Queue("default", connection=Redis.from_url(redis_url)).enqueue("time.sleep", 300, job_timeout=600)
    deadline = time.monotonic() + 120
    while job.get_status() != JobStatus.STARTED and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.get_status() == JobStatus.STARTED, "the work horse never started"
    _note(processes.marked(processes.RUN_ID))
    raise AssertionError("deliberate failure, with the stack and a work horse running")


def test_fails_while_its_stack_starts(tmp_path, redis_url, sandbox):
    stack = _stack(tmp_path, redis_url, sandbox)
    try:
        stack.start(ready_timeout=0.01)  # not ready that fast: TimeoutError with everything spawned
    finally:
        _note([p.pid for p in stack.processes])
