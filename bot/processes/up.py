"""What `feishu-bridge up` does: prepare storage, start the processes, show where things are."""

from __future__ import annotations

import json
import sys
import time

import httpx
from pydantic import SecretStr

from bot.config import Settings
from bot.db import init_schema, make_engine
from bot.metrics import prepare_multiprocess_dir
from bot.processes.runtime import Runtime, metrics_dir, prepare
from bot.processes.supervisor import Supervisor
from bot.processes.web import gunicorn_argv

SANDBOX_ADMIN_TOKEN = "sandbox-admin"


def sandbox_settings(settings: Settings, sandbox_port: int) -> Settings:
    """Point the bridge at the sandbox, with the sandbox's fixed app credentials and its own
    var/ subdirectory so sandbox data never mixes with a real deployment's."""
    from sandbox.state import (
        DEFAULT_USER_OPEN_ID,
        SANDBOX_APP_ID,
        SANDBOX_APP_SECRET,
        SANDBOX_ENCRYPT_KEY,
        SANDBOX_VERIFICATION_TOKEN,
    )

    update = {
        "feishu_app_id": SANDBOX_APP_ID,
        "feishu_app_secret": SecretStr(SANDBOX_APP_SECRET),
        "feishu_encrypt_key": SecretStr(SANDBOX_ENCRYPT_KEY),
        "feishu_verification_token": SecretStr(SANDBOX_VERIFICATION_TOKEN),
        "feishu_base_url": f"http://127.0.0.1:{sandbox_port}",
        "var_dir": settings.var_dir / "sandbox",
        # the sandbox's user may command the bot (unless the operator chose admins already), and
        # the dashboard opens with a fixed, documented token (local demo only)
        "chat_admins": settings.chat_admins or [DEFAULT_USER_OPEN_ID],
        "admin_token": settings.admin_token if settings.admin_token.get_secret_value() else SecretStr(
            SANDBOX_ADMIN_TOKEN),
    }
    return settings.model_copy(update=update)


def _feishu_env(settings: Settings) -> dict[str, str]:
    return {
        "FEISHU_APP_ID": settings.feishu_app_id,
        "FEISHU_APP_SECRET": settings.feishu_app_secret.get_secret_value(),
        "FEISHU_ENCRYPT_KEY": settings.feishu_encrypt_key.get_secret_value(),
        "FEISHU_VERIFICATION_TOKEN": settings.feishu_verification_token.get_secret_value(),
        "FEISHU_BASE_URL": settings.feishu_base_url,
        "CHAT_ADMINS": ",".join(settings.chat_admins),
        "ADMIN_TOKEN": settings.admin_token.get_secret_value(),
    }


def run_up(settings: Settings, *, use_sandbox: bool, port: int | None, sandbox_port: int,
           n_workers: int | None, check: bool) -> int:
    if use_sandbox:
        settings = sandbox_settings(settings, sandbox_port)
    if port:
        settings = settings.model_copy(update={"port": port})
    runtime = prepare(settings)
    try:
        return _run(runtime, use_sandbox=use_sandbox, sandbox_port=sandbox_port,
                    n_workers=n_workers, check=check)
    finally:
        runtime.shutdown()


def _run(runtime: Runtime, *, use_sandbox: bool, sandbox_port: int, n_workers: int | None,
         check: bool) -> int:
    settings = runtime.settings
    prepare_multiprocess_dir(metrics_dir(settings), wipe=True)
    engine = make_engine(settings.effective_database_url)
    try:
        init_schema(engine)
        if use_sandbox:  # the Coze sync docs' example tables, to try templates on
            from sandbox.demo_tables import create_demo_tables

            create_demo_tables(engine, rows=20)
    finally:
        engine.dispose()

    env = runtime.child_env(**_feishu_env(settings), PORT=str(settings.port), HOST=settings.host)
    python = sys.executable
    webhook_url = f"http://127.0.0.1:{settings.port}/webhook/event"
    supervisor = Supervisor()
    if use_sandbox:
        supervisor.add("sandbox", [python, "-m", "bot.cli", "sandbox", "--port", str(sandbox_port),
                                   "--webhook-url", webhook_url], env)
    for i in range(n_workers or settings.workers):
        supervisor.add(f"worker-{i + 1}", [python, "-m", "bot.cli", "worker"], env)
    supervisor.add("cron", [python, "-m", "bot.cli", "cron"], env)
    supervisor.add("web", [python, *gunicorn_argv()], env)

    def on_ready() -> None:
        base = f"http://127.0.0.1:{settings.port}"
        _wait_healthy(base)
        print(f"\n✓ Feishu Bridge is up on {base}", flush=True)
        print(f"  Feishu event subscription request URL: http(s)://<your public host>{'/webhook/event'}")
        print(f"  Dashboard: {base}/   Health: {base}/healthz   Metrics: {base}/metrics")
        print(f"  Redis: {settings.redis_url}   Database: {settings.effective_database_url}")
        how = "the sandbox approves automatically" if use_sandbox else "or run `feishu-bridge auth login`"
        print(f"  Feishu user login (OAuth): open {base}/oauth/login ({how})")
        if use_sandbox:
            sb = f"http://127.0.0.1:{sandbox_port}"
            print(f"  Sandbox (emulated Feishu): {sb}")
            print(f"    say something:  curl -s -XPOST {sb}/sandbox/chat -d '{{\"text\": \"/ping\"}}'")
            print(f"    see bot replies: curl -s {sb}/sandbox/sent")
            print("    try: /help, /status, /export start 2022-01-01 2022-03-31 (after `export auth`)")
            if settings.admin_token.get_secret_value() == SANDBOX_ADMIN_TOKEN:
                print(f"  Dashboard login (sandbox): admin token {SANDBOX_ADMIN_TOKEN}")
            if check:
                ok = ping_round_trip(sb)
                print("  ✓ /ping → pong round trip through the sandbox works" if ok
                      else "  ✗ /ping got no pong within 30 s (see logs above)", flush=True)
        print("Press Ctrl-C to stop.\n", flush=True)

    return supervisor.run(on_ready)


def _wait_healthy(base: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def ping_round_trip(sandbox_base: str, timeout: float = 30.0) -> bool:
    """Type /ping into the sandbox chat and wait for the bot's pong reply to that message."""
    sent = httpx.post(f"{sandbox_base}/sandbox/chat", json={"text": "/ping"}, timeout=5).json()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = httpx.get(f"{sandbox_base}/sandbox/sent",
                            params={"parent_id": sent["message_id"]}, timeout=5).json()["items"]
        if any(json.loads(r["body"]["content"]).get("text") == "pong" for r in replies):
            return True
        time.sleep(0.2)
    return False
