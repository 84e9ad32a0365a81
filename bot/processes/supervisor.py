"""`feishu-bridge up`: run web, workers, cron (and the sandbox) as child processes.

If any child exits on its own, everything is stopped: a half-running bridge that looks up
but silently drops work is worse than one that is visibly down. Ctrl-C / SIGTERM stop all
children gracefully (SIGTERM, then SIGKILL after a grace period).

Each child writes (stdout and stderr) into a pipe of its own, and a thread copies its lines to
`up`'s stdout, whole lines at a time. On a terminal each line gets the child's padded, coloured
name in front (`web      | 12:00:01 INFO …`, the Procfile convention of foreman and honcho);
otherwise lines pass through unchanged, so JSON logs stay JSON.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import BinaryIO

log = logging.getLogger(__name__)

# ANSI colours for the prefixes, in the order children are added (honcho's palette)
COLOURS = ("36", "33", "32", "35", "34", "31", "96", "93", "92", "95", "94", "91")
DRAIN_SECONDS = 5.0  # after the children are gone, how long to wait for the rest of their output


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None
    reader: threading.Thread | None = None


def _stdout_is_tty() -> bool:
    return sys.stdout.isatty()


@dataclass
class Supervisor:
    children: list[Child] = field(default_factory=list)
    grace_seconds: float = 15.0
    # where the children's lines go (default: this process's stdout) and whether to prefix them
    # (default: when that is a terminal)
    output: BinaryIO | None = None
    pretty: bool = field(default_factory=_stdout_is_tty)
    _stopping: bool = False
    _output_gone: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.children.append(Child(name, argv, env))

    def start(self) -> None:
        width = max(len(c.name) for c in self.children)
        for i, child in enumerate(self.children):
            env = {"PYTHONUNBUFFERED": "1", **child.env}  # a print shows now, not at exit
            child.process = subprocess.Popen(child.argv, env=env, start_new_session=True,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            prefix = prefix_for(child.name, width, COLOURS[i % len(COLOURS)]) if self.pretty else b""
            child.reader = threading.Thread(target=self._copy, args=(child.process.stdout, prefix),
                                            name=f"output-{child.name}", daemon=True)
            child.reader.start()
            log.info("started", extra={"child": child.name, "pid": child.process.pid})

    def echo(self, text: str) -> None:
        """Print `up`'s own text (the summary) whole, never in the middle of a child's line."""
        with self._lock:
            out = self._out()
            out.write(text.encode() + (b"" if text.endswith("\n") else b"\n"))
            out.flush()

    def _out(self) -> BinaryIO:
        if self.output is not None:
            return self.output
        sys.stdout.flush()  # anything printed directly goes first
        return sys.stdout.buffer

    def _copy(self, pipe: BinaryIO, prefix: bytes) -> None:
        """One child's output, line by line, until every process holding its pipe is gone.
        If our own output goes away (`up | head`), keep reading: a child must never block on a
        full pipe."""
        with pipe:
            for line in iter(pipe.readline, b""):
                if not line.endswith(b"\n"):
                    line += b"\n"
                with self._lock:
                    if self._output_gone:
                        continue
                    try:
                        out = self._out()
                        out.write(prefix + line)
                        out.flush()
                    except (OSError, ValueError):  # a closed pipe or file
                        self._output_gone = True

    def run(self, on_ready=None) -> int:
        """Start everything, wait until a signal or a child dies; returns the exit code."""
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self._request_stop)
        exit_code = 0
        try:
            self.start()
            if on_ready is not None:
                on_ready()
            while not self._stopping:
                for child in self.children:
                    code = child.process.poll() if child.process else None
                    if code is not None:
                        log.error("child exited; stopping", extra={"child": child.name, "code": code})
                        self.echo(f"✗ {child.name} exited with code {code}; stopping.")
                        exit_code = code or 1
                        self._stopping = True
                        break
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return exit_code

    def _request_stop(self, signum, _frame) -> None:
        self._stopping = True

    def stop(self) -> None:
        running = [c for c in self.children if c.process and c.process.poll() is None]
        for child in reversed(running):  # web first stops intake, then workers finish their job
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        for child in running:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.process.wait(remaining)
            except subprocess.TimeoutExpired:
                log.warning("killing unresponsive child", extra={"child": child.name})
                child.process.kill()
                child.process.wait()
        self._drain()

    def _drain(self) -> None:
        """Wait for the readers to copy what the children wrote last. A pipe stays open while a
        grandchild that inherited it lives on (a work horse, gunicorn's workers): its reader is
        a daemon thread, given up on after DRAIN_SECONDS."""
        deadline = time.monotonic() + DRAIN_SECONDS
        for child in self.children:
            if child.reader is not None:
                child.reader.join(max(0.0, deadline - time.monotonic()))


def prefix_for(name: str, width: int, colour: str) -> bytes:
    """`web      | ` in the child's colour (the Procfile convention)."""
    return f"\x1b[{colour}m{name.ljust(width)} |\x1b[0m ".encode()

