"""`var/stack.json`: what a running `feishu-bridge up` tells commands run in another terminal.

`up` writes it under its (unswitched) var dir once storage is ready and removes it when it exits;
the CLI reads it so that `sources list`, `coze list`, `events` … in the same directory use the
stack's database and Redis without anything being set (see `bot.cli.common.attach_running_stack`).
It holds no secrets: the pid, when it started, its ports and the embedded Redis's URL (a unix
socket or a loopback port). A file whose process is gone (a crash, a kill -9) is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

FILE_NAME = "stack.json"


class StackRunning(RuntimeError):
    """Another `up` is running with the same var dir: one stack per directory."""


@dataclass(frozen=True)
class StackInfo:
    pid: int
    started_at: str  # ISO 8601, UTC
    port: int  # the web app's port
    sandbox_port: int | None  # set when the stack runs the sandbox (`up --sandbox`)
    redis_url: str | None  # the embedded Redis the stack started or found; None: REDIS_URL was set


def path(var_dir: Path) -> Path:
    return var_dir / FILE_NAME


def write(var_dir: Path, *, port: int, sandbox_port: int | None, redis_url: str | None) -> StackInfo:
    """Record this process as the running stack (atomically); StackRunning if another one is."""
    running = read(var_dir)
    if running is not None and running.pid != os.getpid():
        raise StackRunning(
            f"feishu-bridge up is already running here (pid {running.pid}, since {running.started_at[:19]} "
            f"UTC, port {running.port}): stop it first, or run this one with another VAR_DIR"
        )
    info = StackInfo(os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"), port, sandbox_port,
                     redis_url)
    var_dir.mkdir(parents=True, exist_ok=True)
    temporary = path(var_dir).with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(asdict(info), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path(var_dir))
    return info


def read(var_dir: Path) -> StackInfo | None:
    """The running stack, or None: no file, an unreadable one, or one whose process is gone."""
    try:
        doc = json.loads(path(var_dir).read_text(encoding="utf-8"))
        info = StackInfo(int(doc["pid"]), str(doc["started_at"]), int(doc["port"]),
                         int(doc["sandbox_port"]) if doc.get("sandbox_port") else None,
                         str(doc["redis_url"]) if doc.get("redis_url") else None)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if is_stack_process(info.pid) else None


def remove(var_dir: Path) -> None:
    """Remove the file if this process wrote it (never another stack's)."""
    try:
        doc = json.loads(path(var_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(doc, dict) and doc.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path(var_dir).unlink()


def is_stack_process(pid: int) -> bool:
    """The process lives and (where /proc says) runs `… up …`: a recycled pid does not count."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc here: trust the pid
    return b"up" in argv
