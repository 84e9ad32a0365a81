"""The bridge's real processes for end-to-end tests: gunicorn web, RQ workers, cron, and (in
websocket mode) long-connection listeners."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bot.processes.web import gunicorn_argv
from sandbox.state import (
    SANDBOX_APP_ID,
    SANDBOX_APP_SECRET,
    SANDBOX_ENCRYPT_KEY,
    SANDBOX_VERIFICATION_TOKEN,
)
from tests import processes
from tests.servers import free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class BridgeStack:
    workdir: Path
    database_url: str
    redis_url: str
    feishu_base_url: str
    web_workers: int = 2
    web_threads: int = 32
    workers: int = 2
    cron: bool = False
    listeners: int = 0  # > 0: FEISHU_EVENT_MODE=websocket, with this many `listen` processes
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FEISHU_", "PROMETHEUS_"))}
        env.update({
            "FEISHU_APP_ID": SANDBOX_APP_ID,
            "FEISHU_APP_SECRET": SANDBOX_APP_SECRET,
            "FEISHU_ENCRYPT_KEY": SANDBOX_ENCRYPT_KEY,
            "FEISHU_VERIFICATION_TOKEN": SANDBOX_VERIFICATION_TOKEN,
            "FEISHU_BASE_URL": self.feishu_base_url,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "VAR_DIR": str(self.workdir / "var"),
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "metrics"),
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "WEB_WORKERS": str(self.web_workers),
            "WEB_THREADS": str(self.web_threads),
            "LOG_LEVEL": "WARNING",
            "EVENT_RETRY_INTERVALS": "1,2,4",
            "FEISHU_EVENT_MODE": "websocket" if self.listeners else "webhook",
        })
        env.update(self.extra_env)
        return env

    def start(self, ready_timeout: float = 90) -> BridgeStack:
        """Start the stack and wait until the web app answers; on any failure on the way, stop
        what was started before raising."""
        (self.workdir / "metrics").mkdir(parents=True, exist_ok=True)
        env = self.env()
        log = open(self.workdir / "stack.log", "ab")  # noqa: SIM115 - closed with the processes
        from tests.logvault import VAULT

        VAULT.files.append(self.workdir / "stack.log")
        try:
            processes.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], env=env, check=True,
                          stdout=subprocess.DEVNULL, cwd=ROOT)
            for _ in range(self.workers):
                self._spawn([sys.executable, "-m", "bot.cli", "worker"], env, log)
            if self.cron:
                self._spawn([sys.executable, "-m", "bot.cli", "cron"], env, log)
            self._spawn([sys.executable, *gunicorn_argv()], env, log)
            for _ in range(self.listeners):
                self.start_listener()
            wait_http(f"{self.base_url}/healthz", timeout=ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, argv: list[str], env: dict[str, str], log) -> subprocess.Popen:
        process = processes.spawn(argv, env=env, stdout=log, stderr=log, cwd=ROOT)
        self.processes.append(process)
        return process

    def start_listener(self) -> subprocess.Popen:
        """One more `feishu-bridge listen` (also to replace one that was killed)."""
        with open(self.workdir / "stack.log", "ab") as log:
            return self._spawn([sys.executable, "-m", "bot.cli", "listen"], self.env(), log)

    def listener_processes(self) -> list[subprocess.Popen]:
        return [p for p in self.processes if p.args[-1] == "listen" and p.poll() is None]

    def log_text(self) -> str:
        path = self.workdir / "stack.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM to every process group (RQ finishes its job, gunicorn its requests), a bounded
        wait, then SIGKILL. conftest's finalizer also catches what escaped the groups."""
        processes.stop(self.processes, grace=20)
