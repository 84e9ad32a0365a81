"""Shared fixtures: a real Redis server, real PostgreSQL and SQLite, the sandbox, the app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from bot.config import Settings
from bot.db import init_schema
from bot.processes.redis_server import EmbeddedRedis
from bot.services import Services, build_services, install
from sandbox.server import start_in_thread
from sandbox.state import (
    SANDBOX_APP_ID,
    SANDBOX_APP_SECRET,
    SANDBOX_ENCRYPT_KEY,
    SANDBOX_VERIFICATION_TOKEN,
    SandboxConfig,
    SandboxState,
)
from tests import processes, secrets_scan
from tests.servers import PostgresServer

REQUIRE_POSTGRES = os.environ.get("FB_REQUIRE_POSTGRES") == "1"


def pytest_configure(config: pytest.Config) -> None:
    import logging

    from tests.logvault import VAULT

    logging.getLogger().addHandler(VAULT)


@pytest.fixture(autouse=True)
def stop_test_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every process the test started (tests/processes.py) is stopped when it ends, failed or
    not — after the test's own fixtures have had their chance (autouse: torn down last)."""
    owner = processes.begin(request.node.nodeid)
    yield
    leftovers = processes.stop_owned(owner)
    if leftovers:
        import logging

        logging.getLogger(__name__).warning(
            "killed processes the test left behind", extra={"test": request.node.nodeid, "pids": leftovers}
        )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    processes.kill_marked(processes.RUN_ID)
    secrets_scan.check_at_session_end(session)


def pytest_terminal_summary(terminalreporter) -> None:
    secrets_scan.pytest_terminal_summary(terminalreporter)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[Redis]:
    conn = Redis.from_url(redis_url)
    conn.flushall()
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.start()
    except (RuntimeError, OSError) as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL required (FB_REQUIRE_POSTGRES=1) but could not start: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bridge.db'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[tuple[str, SandboxState]]:
    """The Feishu sandbox in a thread; re-delivery compressed to fractions of a second.
    One per session: lark-oapi caches tenant tokens process-wide, as a real process would."""
    server = start_in_thread(SandboxConfig(redelivery_schedule=(0.2, 0.5, 1.0)))
    state: SandboxState = server.app.extensions["sandbox"]  # type: ignore[attr-defined]
    secrets_scan.watch_sandbox(state)  # the tokens it issues must never show up in a log
    yield f"http://127.0.0.1:{server.server_port}", state
    state.sender.close()
    server.shutdown()


@pytest.fixture
def sandbox(sandbox_server: tuple[str, SandboxState]) -> tuple[str, SandboxState]:
    """The session's sandbox with messages, recorded calls, deliveries and faults cleared."""
    _, state = sandbox_server
    state.reset()
    state.sender.clear()
    return sandbox_server


def make_settings(tmp_path: Path, **overrides) -> Settings:
    values = {
        "feishu_app_id": SANDBOX_APP_ID,
        "feishu_app_secret": SANDBOX_APP_SECRET,
        "feishu_encrypt_key": SANDBOX_ENCRYPT_KEY,
        "feishu_verification_token": SANDBOX_VERIFICATION_TOKEN,
        "admin_token": "admin-token-for-tests-0001-0123456789abcdef",
        "var_dir": tmp_path / "var",
        "log_json": True,
        "feishu_retry_max_wait": 0.05,  # the sandbox's rate-limit reset is 1 s; tests need not wait it
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str, sandbox) -> Settings:
    base_url, _ = sandbox
    return make_settings(tmp_path, database_url=database_url, redis_url=redis_url,
                         feishu_base_url=base_url, event_retry_intervals=[0, 0])


@pytest.fixture
def services(settings: Settings, redis_conn: Redis) -> Iterator[Services]:
    built = build_services(settings)
    init_schema(built.engine)
    install(built)
    yield built
    built.close()


@pytest.fixture
def app(services: Services):
    from bot.app import create_app

    application = create_app(services=services)
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app):
    return app.test_client()
