"""`feishu-bridge up`: run web, workers, cron (and the sandbox) as child processes.

A child that exits on its own is started again after a backoff (1 s, 2 s, 4 s … up to 30 s;
a child that ran for a while starts from 1 s again): a Redis restart or one bad moment must not
take the bridge down. A child that keeps failing at once (`max_restarts` times in a row: a
configuration error, say) stops everything instead — a bridge that looks up but silently drops
work is worse than one that is visibly down. Watchdogs do the same for what is not a child (the
embedded Redis, which daemonises itself). Ctrl-C / SIGTERM stop all children gracefully:
SIGTERM, then after a grace period SIGKILL to each child's whole process group.

Each child writes (stdout and stderr) into a pipe of its own, and a thread copies its lines to
`up`'s stdout, whole lines at a time. On a terminal each line gets the child's padded, coloured
name in front (`web      | 12:00:01 INFO …`, the Procfile convention of foreman and honcho);
otherwise lines pass through unchanged, so JSON logs stay JSON.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

log = logging.getLogger(__name__)

# ANSI colours for the prefixes, in the order children are added (honcho's palette)
COLOURS = ("36", "33", "32", "35", "34", "31", "96", "93", "92", "95", "94", "91")
DRAIN_SECONDS = 5.0  # after the children are gone, how long to wait for the rest of their output


def backoff(failures: int, first: float, cap: float) -> float:
    """Seconds to wait before the next start after `failures` quick failures in a row."""
    return min(cap, first * 2 ** max(0, failures - 1))


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None
    readers: list[threading.Thread] = field(default_factory=list)  # one per start
    prefix: bytes = b""
    started_at: float = 0.0
    failures: int = 0  # quick exits in a row
    restart_at: float | None = None  # dead, to be started again at this time.monotonic()


@dataclass
class Watchdog:
    """Something that is not our child but must be up (the embedded Redis): checked every
    `every` seconds, revived when it does not answer, with the children's backoff."""

    name: str
    alive: Callable[[], bool]
    revive: Callable[[], object]
    every: float = 1.0
    failures: int = 0
    next_check: float = 0.0


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
    # restarts: the first after `restart_first` s, doubling up to `restart_cap`; a child that
    # lived `stable_seconds` counts as healthy again; `max_restarts` quick failures stop it all
    restart_first: float = 1.0
    restart_cap: float = 30.0
    stable_seconds: float = 30.0
    max_restarts: int = 5
    watchdogs: list[Watchdog] = field(default_factory=list)
    _stopping: bool = False
    _exit_code: int = 0
    _output_gone: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.children.append(Child(name, argv, env))

    def watch(self, name: str, alive: Callable[[], bool], revive: Callable[[], object],
              every: float = 1.0) -> None:
        self.watchdogs.append(Watchdog(name, alive, revive, every))

    def start(self) -> None:
        width = max(len(c.name) for c in self.children)
        for i, child in enumerate(self.children):
            child.prefix = prefix_for(child.name, width, COLOURS[i % len(COLOURS)]) if self.pretty else b""
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        env = {"PYTHONUNBUFFERED": "1", **child.env}  # a print shows now, not at exit
        child.process = subprocess.Popen(child.argv, env=env, start_new_session=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        child.started_at, child.restart_at = time.monotonic(), None
        reader = threading.Thread(target=self._copy, args=(child.process.stdout, child.prefix),
                                  name=f"output-{child.name}", daemon=True)
        reader.start()
        child.readers = [r for r in child.readers if r.is_alive()] + [reader]
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

    def run(self, on_ready: Callable[[], None] | None = None) -> int:
        """Start everything, tend it until a signal (or a child failing again and again);
        returns the exit code."""
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self._request_stop)
        try:
            self.start()
            if on_ready is not None:
                on_ready()
            while not self._stopping:
                self.tend()
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self._exit_code

    def tend(self) -> None:
        """One look at every child and watchdog: restart what is due, schedule what died."""
        for watchdog in self.watchdogs:
            if not self._stopping:
                self._check(watchdog)
        for child in self.children:
            if self._stopping:
                return
            if child.restart_at is not None:
                if time.monotonic() >= child.restart_at:
                    self._spawn(child)
                continue
            code = child.process.poll() if child.process else None
            if code is not None:
                self._died(child, code)

    def _died(self, child: Child, code: int) -> None:
        _forget_live_gauges(child)
        if time.monotonic() - child.started_at >= self.stable_seconds:
            child.failures = 0
        child.failures += 1
        if child.failures > self.max_restarts:
            log.error("child exited; stopping", extra={"child": child.name, "code": code})
            self.echo(f"✗ {child.name} exited with code {code}; stopping.")
            self._exit_code = code or 1
            self._stopping = True
            return
        delay = backoff(child.failures, self.restart_first, self.restart_cap)
        log.error("child exited; restarting", extra={"child": child.name, "code": code, "delay": delay})
        self.echo(f"↻ {child.name} exited with code {code}; restarting in {delay:.1f} s.")
        child.restart_at = time.monotonic() + delay

    def _check(self, watchdog: Watchdog) -> None:
        now = time.monotonic()
        if now < watchdog.next_check:
            return
        if watchdog.alive():
            watchdog.failures, watchdog.next_check = 0, now + watchdog.every
            return
        watchdog.failures += 1
        self.echo(f"↻ {watchdog.name} is not answering; restarting it.")
        try:
            watchdog.revive()
        except Exception as exc:  # tried again after the backoff
            log.error("restart failed", extra={"child": watchdog.name, "error": str(exc)})
        watchdog.next_check = time.monotonic() + backoff(watchdog.failures, self.restart_first,
                                                          self.restart_cap)

    def request_stop(self) -> None:
        """Ask `run` to stop everything (from another thread, or a signal handler)."""
        self._stopping = True

    def _request_stop(self, signum, _frame) -> None:
        self._stopping = True

    def stop(self) -> None:
        """SIGTERM to every running child, a grace period, then SIGKILL to every child's process
        group: what ignored SIGTERM, and what a child that did stop left behind in its group."""
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
        for child in self.children:
            if child.process is not None:
                _kill_group(child.process)
        self._drain()

    def _drain(self) -> None:
        """Wait for the readers to copy what the children wrote last. A pipe stays open while a
        grandchild that inherited it lives on (a work horse, gunicorn's workers): its reader is
        a daemon thread, given up on after DRAIN_SECONDS."""
        deadline = time.monotonic() + DRAIN_SECONDS
        for child in self.children:
            for reader in child.readers:
                reader.join(max(0.0, deadline - time.monotonic()))


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the child's process group (its pid: each child leads its own session), then
    reap the child. A group whose last member is gone is simply not found."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


def prefix_for(name: str, width: int, colour: str) -> bytes:
    """`web      | ` in the child's colour (the Procfile convention)."""
    return f"\x1b[{colour}m{name.ljust(width)} |\x1b[0m ".encode()


def _forget_live_gauges(child: Child) -> None:
    """A child killed outright never marks its metrics dead: its `live*` gauges (e.g. a listener's
    `feishu_ws_connected`) would keep counting in /metrics. gunicorn's workers get the same from
    `child_exit` (gunicorn_conf.py)."""
    directory = child.env.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and child.process is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(child.process.pid, directory)
