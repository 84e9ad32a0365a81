"""The suite's own hygiene: a failing end-to-end test leaves no process behind, and the secrets
scan runs at session end whatever was selected — each checked by running pytest on a probe."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from sandbox.state import SANDBOX_APP_SECRET
from tests import processes, secrets_scan

ROOT = Path(__file__).resolve().parent.parent


def _pytest(target: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    inner = {k: v for k, v in os.environ.items() if k != processes.MARK}
    inner.update(env)
    return processes.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target, *args],
        env=inner, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
    )


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_a_failing_e2e_test_leaves_no_process_behind(tmp_path):
    run_id, pids = f"probe{uuid.uuid4().hex[:8]}", tmp_path / "pids"
    done = _pytest("tests/probes/failing_e2e.py", FB_TEST_RUN_ID=run_id, FB_PROBE_PIDS=str(pids),
                   FB_TEST_STOP_GRACE="3")
    assert done.returncode == 1 and "2 failed" in done.stdout, done.stdout[-4000:]
    assert "deliberate failure" in done.stdout and "TimeoutError" in done.stdout
    seen = {int(p) for p in pids.read_text().split()}
    # gunicorn master + worker, RQ worker (+ its scheduler), the work horse, cron — twice over
    assert len(seen) >= 8, seen
    assert [pid for pid in seen if _alive(pid)] == []
    assert processes.marked(run_id) == []


def test_the_secrets_scan_runs_at_session_end_for_any_selection():
    leaky = _pytest("tests/probes/leaky.py", "-k", "logs_a_secret")
    assert "1 passed" in leaky.stdout and leaky.returncode == 1, leaky.stdout[-3000:]
    assert "secrets scan" in leaky.stdout and "FAILED: 1 secret(s)" in leaky.stdout
    assert SANDBOX_APP_SECRET not in leaky.stdout  # the report does not repeat it
    clean = _pytest("tests/probes/leaky.py", "-k", "nothing_secret")
    assert clean.returncode == 0 and "no secret in" in clean.stdout, clean.stdout[-3000:]


def test_secrets_are_found_in_text():
    assert secrets_scan.leaks("nothing here", ["s3cr3t-value"]) == []
    assert secrets_scan.leaks("a s3cr3t-value b", ["s3cr3t-value"]) == ["s3cr3t-v…"]
    token = "u-sandbox123456789012" + "0123456789abcdef"
    assert secrets_scan.leaks(f"Bearer {token}", []) == [token[:12] + "…"]
