"""An idle `up --sandbox` is quiet: under 20 lines in a minute, and a start-up summary that fits
one screen. (A stack of its own: waiting a minute inside test_up's test would make it slower and
its later steps' logs part of the count.)"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.logvault import VAULT
from tests.test_up import ROUND_TRIP_OK, _read_until, _stop, spawn_up_sandbox

pytestmark = pytest.mark.slow

READY = "Press Ctrl-C to stop."
IDLE_SECONDS = 60
IDS = ("job_id", "event_id", "event_ids", "child", "path")  # what names an ERROR line's subject


def _read_for(process: subprocess.Popen, seconds: float) -> str:
    """Everything the stack prints in the next `seconds` (stdout already non-blocking)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        chunk = process.stdout.read()
        if chunk:
            chunks.append(chunk)
        time.sleep(0.5)
    return b"".join(chunks).decode(errors="replace")


def test_an_idle_stack_logs_under_20_lines_a_minute(tmp_path):
    process, _port, _sandbox_port = spawn_up_sandbox(tmp_path)
    try:
        started = _read_until(process, READY, timeout=120)
        start_up, _, after = started.partition(READY + "\n")
        idle = after + _read_for(process, IDLE_SECONDS)
    finally:
        code = _stop(process)
    output = started + idle
    VAULT.lines.append(output)  # for the suite's secrets scan
    assert code == 0

    # the summary: one block of ✓ and indented lines, one screen high, 100 columns wide
    lines = (start_up + READY).splitlines()
    first = max(i for i, line in enumerate(lines) if line.startswith("✓ Feishu Bridge is up on"))
    block = lines[first:]
    assert ROUND_TRIP_OK in "\n".join(block)
    assert all(line.startswith(("✓", "  ", READY)) for line in block), "\n".join(block)
    assert len(block) <= 20 and max(map(len, block)) <= 100, "\n".join(block)

    idle_lines = [line for line in idle.splitlines() if line.strip()]
    print(f"\nidle {IDLE_SECONDS} s: {len(idle_lines)} lines")
    assert len(idle_lines) < 20, "\n".join(idle_lines)

    assert "DeprecationWarning" not in output
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    for record in records:
        if record["level"] in ("ERROR", "CRITICAL"):
            assert any(record.get(key) for key in IDS), record
    assert not [line for line in start_up.splitlines() if "rq.cron" in line and "Enqueued job" in line]
