"""`feishu-bridge up`: run web, workers, cron (and the sandbox) as child processes.

If any child exits on its own, everything is stopped: a half-running bridge that looks up
but silently drops work is worse than one that is visibly down. Ctrl-C / SIGTERM stop all
children gracefully (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None


@dataclass
class Supervisor:
    children: list[Child] = field(default_factory=list)
    grace_seconds: float = 15.0
    _stopping: bool = False

    def add(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.children.append(Child(name, argv, env))

    def start(self) -> None:
        for child in self.children:
            child.process = subprocess.Popen(child.argv, env=child.env, start_new_session=True)
            log.info("started", extra={"process": child.name, "pid": child.process.pid})

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
                        log.error("child exited; stopping", extra={"process": child.name, "code": code})
                        print(f"✗ {child.name} exited with code {code}; stopping.", file=sys.stderr)
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
                log.warning("killing unresponsive child", extra={"process": child.name})
                child.process.kill()
                child.process.wait()
