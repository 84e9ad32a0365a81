"""Every process a test starts, stopped when the test ends — passed or failed.

A test starts processes only through `spawn` and `run` here. Each process gets its own session
(so its whole process group can be signalled) and the environment variable FB_TEST_OWNER naming
the test that started it; children inherit it, including those that leave the group (RQ's work
horses call setpgrp, gunicorn's workers and Chromium are forked or exec'd from processes that
carry it). The autouse fixture in conftest.py calls `stop_owned` after every test: SIGTERM to
every group, a bounded wait, SIGKILL to what is left, then SIGKILL to any process anywhere that
still carries the test's mark. So a test that fails while its stack starts, or half-way through,
or whose finalizer hangs, leaves nothing running for the tests after it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

MARK = "FB_TEST_OWNER"
# One id per pytest session (a parent test that runs pytest can name it, to look for leftovers)
RUN_ID = os.environ.get("FB_TEST_RUN_ID") or uuid.uuid4().hex[:12]

_owner = f"{RUN_ID}/session"
_started: dict[str, list[subprocess.Popen]] = {}


def begin(test_id: str) -> str:
    """Processes spawned from now on belong to this test (called by conftest's autouse fixture)."""
    global _owner
    _owner = f"{RUN_ID}/{uuid.uuid5(uuid.NAMESPACE_URL, test_id).hex[:12]}"
    return _owner


@contextlib.contextmanager
def owned_by(name: str) -> Iterator[str]:
    """Processes spawned inside belong to `name` (a module- or session-scoped fixture's), not to
    the test being set up: the fixture stops them itself with `stop_owned(owner)` when it is torn
    down, and the session's end kills any left (their mark still starts with RUN_ID)."""
    global _owner
    previous, _owner = _owner, f"{RUN_ID}/{name}"
    try:
        yield _owner
    finally:
        _owner = previous


def spawn(argv: Sequence[str], *, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen:
    """subprocess.Popen in a new session, marked as the current test's."""
    marked = dict(os.environ if env is None else env)
    marked[MARK] = _owner
    process = subprocess.Popen(list(argv), env=marked, start_new_session=True, **popen)
    _started.setdefault(_owner, []).append(process)
    return process


def run(argv: Sequence[str], *, timeout: float = 600, check: bool = False, input: str | None = None,
        **popen: Any) -> subprocess.CompletedProcess:
    """subprocess.run through `spawn`: on a timeout the whole group goes, not just the child."""
    if input is not None:
        popen.setdefault("stdin", subprocess.PIPE)
    process = spawn(argv, **popen)
    try:
        out, err = process.communicate(input, timeout=timeout)
    except BaseException:
        stop([process], grace=0)
        raise
    done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    if check:
        done.check_returncode()
    return done


def stop(processes: Sequence[subprocess.Popen], grace: float = 15.0) -> None:
    """SIGTERM every process group, wait up to `grace` seconds in all, SIGKILL the rest."""
    alive = [p for p in processes if p.poll() is None]
    for process in alive:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in alive:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    for process in processes:
        _signal_group(process, signal.SIGKILL)  # whatever is left of the group, leader gone or not
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)


def stop_owned(owner: str, grace: float = float(os.environ.get("FB_TEST_STOP_GRACE", 15))) -> list[int]:
    """Stop what `owner` (a test) started; the pids that had to be killed by their mark."""
    started = _started.pop(owner, [])
    if not started:
        return []
    stop(started, grace)
    return kill_marked(owner)


def kill_marked(prefix: str) -> list[int]:
    """SIGKILL every process whose FB_TEST_OWNER starts with `prefix`; their pids."""
    found = marked(prefix)
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return found


def marked(prefix: str) -> list[int]:
    """Live processes (not zombies) carrying a mark that starts with `prefix`."""
    needle = f"{MARK}={prefix}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if state != "Z" and any(item.startswith(needle) for item in environ.split(b"\0")):
            found.append(int(entry.name))
    return found


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)  # the session leader's pid is its group's id
