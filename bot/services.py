"""The long-lived dependencies of one process, built once and passed to whoever needs them.

Web requests reach them through the Flask app; RQ jobs (which can only carry plain
arguments) through `current()`, which the worker process installs before it starts work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from redis import Redis
from rq import Queue
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Settings
from bot.db import make_engine, make_session_factory
from bot.queue import connect_redis, queues

if TYPE_CHECKING:
    from bot.coze.client import CozeClients
    from bot.export.contract import ContractClient
    from bot.feishu import Feishu
    from bot.tokens.provider_tokens import ProviderTokens
    from bot.tokens.secretbox import SecretBox
    from bot.tokens.user_tokens import UserTokens


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: Redis
    queues: dict[str, Queue]
    _pid: int = field(default_factory=os.getpid)

    @cached_property
    def secret_box(self) -> SecretBox:
        from bot.tokens.secretbox import build_secret_box

        return build_secret_box(self.settings)

    @cached_property
    def feishu(self) -> Feishu:
        """The one gateway to the open platform (built on first use: importing lark-oapi is slow)."""
        from bot.feishu import Feishu, build_client
        from bot.tokens.tenant_cache import RedisTokenCache

        cache = RedisTokenCache(self.redis, self.secret_box)
        feishu = Feishu(build_client(self.settings, cache), self.settings, cache)
        feishu.user_tokens = self._user_tokens(feishu)
        return feishu

    @cached_property
    def contract(self) -> ContractClient:
        """Feishu Contract's internal endpoints (browser-session auth, not the open platform)."""
        import httpx

        from bot.export.contract import ContractClient

        return ContractClient(httpx.Client(timeout=30.0, follow_redirects=False))

    @cached_property
    def coze_clients(self) -> CozeClients:
        """Coze SDK clients, one per (API URL, key), built on first use and kept."""
        from bot.coze.client import CozeClients

        return CozeClients(self.settings.coze_timeout_seconds)

    @property
    def user_tokens(self) -> UserTokens:
        tokens = self.feishu.user_tokens
        assert tokens is not None
        return tokens

    @cached_property
    def provider_tokens(self) -> ProviderTokens:
        """External OAuth providers' tokens (OAUTH_PROVIDERS), through the same token store."""
        from bot.tokens.provider_tokens import ProviderTokens

        return ProviderTokens(self.engine, self.redis, self.secret_box, self.settings)

    def _user_tokens(self, feishu: Feishu) -> UserTokens:
        from bot.tokens.user_tokens import UserTokens

        return UserTokens(self.engine, self.redis, self.secret_box, self.settings, feishu.post_oauth_token)

    def after_fork(self) -> None:
        """Forked children (RQ work horses) must not share the parent's DB connections."""
        if self._pid != os.getpid():
            self.engine.dispose(close=False)
            self._pid = os.getpid()

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()


def build_services(settings: Settings) -> Services:
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL must be resolved before building services")
    engine = make_engine(settings.effective_database_url)
    redis = connect_redis(settings.redis_url)
    return Services(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        redis=redis,
        queues=queues(redis),
    )


_installed: Services | None = None


def install(services: Services) -> None:
    global _installed
    _installed = services


def current() -> Services:
    """The services of this worker process (installed by `feishu-bridge worker`)."""
    if _installed is None:
        raise RuntimeError("no services installed in this process; run jobs via `feishu-bridge worker`")
    _installed.after_fork()
    return _installed
