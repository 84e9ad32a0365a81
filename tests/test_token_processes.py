"""User-token refresh across real processes: once for many callers, and surviving kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.services import build_services
from sandbox.state import DEFAULT_USER_OPEN_ID
from tests import processes
from tests.oauth_helpers import authorize, expire_in

ROOT = Path(__file__).resolve().parent.parent


def _env(services, **extra) -> dict[str, str]:
    settings = services.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEISHU_", "TOKEN_"))}
    env.update({
        "DATABASE_URL": settings.effective_database_url, "REDIS_URL": settings.redis_url,
        "VAR_DIR": str(settings.var_dir), "FEISHU_BASE_URL": settings.feishu_base_url,
        "FEISHU_APP_ID": settings.feishu_app_id,
        "FEISHU_APP_SECRET": settings.feishu_app_secret.get_secret_value(),
        "LOG_LEVEL": "WARNING",
    })
    env.update(extra)
    return env


def _stderr_log(services) -> object:
    """Child processes' stderr goes to a file the suite's secrets scan reads."""
    from tests.logvault import VAULT

    path = services.settings.var_dir / f"child-{time.monotonic_ns()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    VAULT.files.append(path)
    return path.open("w")


def _callers(services, threads: int, start_at: float, **extra) -> subprocess.Popen:
    return processes.spawn([sys.executable, "-m", "tests.token_callers", str(threads), str(start_at)],
                           cwd=ROOT, env=_env(services, **extra), stdout=subprocess.PIPE,
                           stderr=_stderr_log(services), text=True)


def _refreshes(state) -> list[dict]:
    return [r for r in state.refresh_log if r["grant_type"] == "refresh_token"]


def test_32_callers_in_4_processes_cause_one_refresh(services, sandbox):
    _, state = sandbox
    authorize(services)
    expire_in(services, DEFAULT_USER_OPEN_ID, 60)  # about to expire: everyone wants a refresh
    start_at = time.time() + 8  # after every process has imported the SDK
    procs = [_callers(services, 8, start_at) for _ in range(4)]
    outputs = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    tokens = [t for o in outputs for t in o["tokens"]]
    errors = [e for o in outputs for e in o["errors"]]
    assert errors == []
    assert len(tokens) == 32 and len(set(tokens)) == 1
    assert len(_refreshes(state)) == 1
    assert services.user_tokens.get_valid_user_token() == tokens[0]


@pytest.mark.slow
def test_kill_9_mid_refresh_recovers_after_the_lock_ttl(services, sandbox):
    _, state = sandbox
    authorize(services)
    before = services.user_tokens.grants()[0]
    expire_in(services, DEFAULT_USER_OPEN_ID, 60)
    state.faults.update({"slow_refresh_seconds": 6, "slow_refresh_count": 1})
    victim = _callers(services, 1, time.time(), TOKEN_LOCK_TTL_SECONDS="3")
    deadline = time.time() + 30
    while state.faults.slow_refresh_count:  # until the victim's refresh reaches the sandbox
        assert time.time() < deadline, "the victim never started its refresh"
        time.sleep(0.05)
    time.sleep(0.5)  # the victim holds the lock and waits on the stalled refresh
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)

    # the stored row is untouched: still the old, readable pair
    row = services.user_tokens.grants()[0]
    assert (row.generation, row.status) == (before.generation, "active")

    recovery = build_services(services.settings.model_copy(update={"token_lock_ttl_seconds": 3}))
    started = time.monotonic()
    token = recovery.user_tokens.get_valid_user_token()
    waited = time.monotonic() - started
    assert 0.5 < waited < 10  # blocked on the dead holder's lock until its TTL ran out
    row = services.user_tokens.grants()[0]
    assert row.generation == before.generation + 1 and row.status == "active"
    assert services.user_tokens.get_valid_user_token() == token
    assert "ok" in [r["outcome"] for r in _refreshes(state)]
    recovery.close()


def test_processes_share_one_tenant_token_through_redis(services, sandbox):
    _, state = sandbox
    before = state.token_requests
    for n in range(3):
        processes.run([sys.executable, "-m", "tests.tenant_caller", "oc_shared", str(n)], cwd=ROOT,
                      env=_env(services), stderr=_stderr_log(services), check=True, timeout=120)
    assert state.token_requests == before + 1  # the first process fetched it; the others reused it
    assert len([m for m in state.bot_sent if m.chat_id == "oc_shared"]) == 3


def test_auth_cli_login_status_logout(services, app, sandbox):
    """`auth login` prints a one-time link and waits; approving it (the sandbox auto-approves, the web
    app's callback stores the grant) ends the wait. Then status --json and logout."""
    import httpx

    env = _env(services)
    argv = [sys.executable, "-m", "bot.cli", "auth", "login", "--no-browser", "--wait", "90"]
    login = processes.spawn(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=_stderr_log(services),
                            text=True)
    url = ""
    for line in login.stdout:
        if line.startswith("http"):
            url = line.strip()
            break
    # a one-time link to the web app, which sends the browser on to Feishu's authorise page
    assert "/oauth/login?ticket=" in url
    browser = app.test_client()
    started = browser.get(url[url.index("/oauth/login"):])
    authorize = started.headers["location"]
    assert "/open-apis/authen/v1/authorize?" in authorize and "offline_access" in authorize
    approved = httpx.get(authorize, follow_redirects=False)
    callback = approved.headers["location"].split("/oauth/callback", 1)[1]
    assert browser.get("/oauth/callback" + callback).status_code == 200
    out, _ = login.communicate(timeout=60)
    assert login.returncode == 0 and f"({DEFAULT_USER_OPEN_ID})" in out

    status = processes.run([sys.executable, "-m", "bot.cli", "auth", "status", "--json"], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
    [grant] = json.loads(status.stdout)["grants"]
    assert grant["subject"] == DEFAULT_USER_OPEN_ID and grant["status"] == "active"
    assert 1.9 < grant["access_hours_left"] <= 2.0 and grant["refresh_hours_left"] > 700
    assert [h["outcome"] for h in grant["history"]] == ["authorized"]
    assert "u-sandbox" not in status.stdout and "ur-sandbox" not in status.stdout

    refreshed = processes.run([sys.executable, "-m", "bot.cli", "auth", "refresh"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert refreshed.returncode == 0 and "Refreshed" in refreshed.stdout
    gone = processes.run([sys.executable, "-m", "bot.cli", "auth", "logout"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert gone.returncode == 0 and services.user_tokens.grants() == []
