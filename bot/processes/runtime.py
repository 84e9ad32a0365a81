"""Turning settings into a runnable environment: embedded Redis, var/ directories, metrics dir.

Every long-running command (web, worker, cron, up) goes through `prepare`, so an unset
REDIS_URL means the same private Redis for all of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.private import private_dir
from bot.processes.redis_server import EmbeddedRedis


@dataclass
class Runtime:
    settings: Settings  # with redis_url resolved
    embedded_redis: EmbeddedRedis | None
    started_redis: bool

    def child_env(self, **extra: str) -> dict[str, str]:
        """Environment for child processes: the same resolved configuration."""
        env = dict(os.environ)
        env["REDIS_URL"] = self.settings.redis_url
        env["DATABASE_URL"] = self.settings.effective_database_url
        env["VAR_DIR"] = str(self.settings.var_dir.resolve())
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir(self.settings)))
        env.update(extra)
        return env

    def shutdown(self) -> None:
        if self.started_redis and self.embedded_redis is not None:
            self.embedded_redis.stop()


def metrics_dir(settings: Settings) -> Path:
    return (settings.var_dir / "metrics").resolve()


def prepare(settings: Settings, *, metrics: bool = True) -> Runtime:
    """`metrics=False` for short commands (e.g. `auth status`) that export no metrics."""
    private_dir(settings.var_dir, tighten_existing=True)  # database, key, exports: owner only
    if metrics:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir(settings)))
        Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    if settings.redis_url:
        return Runtime(settings, None, False)
    embedded = EmbeddedRedis(settings.var_dir / "redis")
    started = embedded.start()
    resolved = settings.model_copy(update={"redis_url": embedded.url})
    return Runtime(resolved, embedded, started)
