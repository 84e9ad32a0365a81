"""What `feishu-bridge up` does: prepare storage, start the processes, show where things are."""

from __future__ import annotations

import json
import os
import sys
import time

import httpx
from pydantic import SecretStr

from bot.config import Settings
from bot.db import make_engine
from bot.metrics import prepare_multiprocess_dir
from bot.processes import stackfile
from bot.processes.runtime import Runtime, metrics_dir, prepare
from bot.processes.supervisor import Supervisor
from bot.processes.web import gunicorn_argv

SANDBOX_ADMIN_TOKEN = "sandbox-admin"


def sandbox_settings(settings: Settings, sandbox_port: int) -> Settings:
    """Point the bridge at the sandbox, with the sandbox's fixed app credentials and its own
    var/ subdirectory so sandbox data never mixes with a real deployment's."""
    from bot.config import ProviderCredentials
    from sandbox.seed_ads import ADS_APP_ID, ADS_SECRET
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
        # the sandbox's ad platform, for the example pipeline (bot/pipelines/examples.py)
        "oauth_providers": {"ads": ProviderCredentials(client_id=ADS_APP_ID, client_secret=ADS_SECRET,
                                                       api_url=f"http://127.0.0.1:{sandbox_port}/ads"),
                            **settings.oauth_providers},
    }
    return settings.model_copy(update=update)


def _feishu_env(settings: Settings) -> dict[str, str]:
    return {
        "FEISHU_APP_ID": settings.feishu_app_id,
        "FEISHU_APP_SECRET": settings.feishu_app_secret.get_secret_value(),
        "FEISHU_ENCRYPT_KEY": settings.feishu_encrypt_key.get_secret_value(),
        "FEISHU_VERIFICATION_TOKEN": settings.feishu_verification_token.get_secret_value(),
        "FEISHU_BASE_URL": settings.feishu_base_url,
        "FEISHU_EVENT_MODE": settings.feishu_event_mode,
        "CHAT_ADMINS": ",".join(settings.chat_admins),
        "ADMIN_TOKEN": settings.admin_token.get_secret_value(),
        "OAUTH_PROVIDERS": json.dumps({
            name: {**c.model_dump(), "client_secret": c.client_secret.get_secret_value()}
            for name, c in settings.oauth_providers.items()}),
    }


def run_up(settings: Settings, *, use_sandbox: bool, port: int | None, sandbox_port: int,
           n_workers: int | None, check: bool) -> int:
    home = settings.var_dir  # where var/stack.json goes: the directory other terminals look in
    if use_sandbox:
        settings = sandbox_settings(settings, sandbox_port)
    if port:
        settings = settings.model_copy(update={"port": port})
    runtime = prepare(settings)
    try:
        stackfile.write(home, port=settings.port, sandbox_port=sandbox_port if use_sandbox else None,
                        redis_url=None if settings.redis_url else runtime.settings.redis_url)
        return _run(runtime, use_sandbox=use_sandbox, sandbox_port=sandbox_port,
                    n_workers=n_workers, check=check)
    finally:
        stackfile.remove(home)
        runtime.shutdown()


def _run(runtime: Runtime, *, use_sandbox: bool, sandbox_port: int, n_workers: int | None,
         check: bool) -> int:
    settings = runtime.settings
    prepare_multiprocess_dir(metrics_dir(settings), wipe=True)
    engine = make_engine(settings.effective_database_url)
    try:
        _upgrade_if_ours(engine, settings)
        if use_sandbox:  # the Coze sync docs' example tables, to try templates on
            from sandbox.demo_tables import create_demo_tables

            create_demo_tables(engine, rows=20)
    finally:
        engine.dispose()

    env = runtime.child_env(**_feishu_env(settings), PORT=str(settings.port), HOST=settings.host)
    python = sys.executable
    webhook_url = f"http://127.0.0.1:{settings.port}/webhook/event"
    supervisor = Supervisor()
    if supervisor.pretty and settings.log_json is None:  # lines go to a terminal: text, not JSON
        env["LOG_JSON"] = "false"
    if use_sandbox:
        supervisor.add("sandbox", [python, "-m", "bot.cli", "sandbox", "--port", str(sandbox_port),
                                   "--webhook-url", webhook_url, "--events", settings.feishu_event_mode], env)
    for i in range(n_workers or settings.workers):
        supervisor.add(f"worker-{i + 1}", [python, "-m", "bot.cli", "worker"], env)
    supervisor.add("cron", [python, "-m", "bot.cli", "cron"], env)
    supervisor.add("web", [python, *gunicorn_argv()], env)
    if settings.feishu_event_mode == "websocket":  # events come over the long connection
        supervisor.add("listener", [python, "-m", "bot.cli", "listen"], env)
    redis = runtime.embedded_redis
    if runtime.started_redis and redis is not None:  # ours: same socket or port, same data dir
        supervisor.watch("redis", redis.is_running, redis.start)

    def on_ready() -> None:
        base = f"http://127.0.0.1:{settings.port}"
        _wait_healthy(base)
        sb = f"http://127.0.0.1:{sandbox_port}" if use_sandbox else None
        pong = ping_round_trip(sb) if sb and check else None
        # one block, printed whole once the check is done, so no log line lands inside it
        supervisor.echo("\n".join(summary(settings, base, sb, pong)) + "\n")

    return supervisor.run(on_ready)


def summary(settings: Settings, base: str, sandbox: str | None, pong: bool | None) -> list[str]:
    """What `up` prints once everything answers: one screen, at most 100 columns."""
    how = ("dashboard login first; sandbox approves" if sandbox
           else "dashboard login first, or `auth login`")
    token = (f"admin token {SANDBOX_ADMIN_TOKEN}; "
             if settings.admin_token.get_secret_value() == SANDBOX_ADMIN_TOKEN else "")
    lines = [
        "",
        f"✓ Feishu Bridge is up on {base}",
        f"  Dashboard   {base}/  ({token}also /healthz, /metrics)",
        "  Webhook     http(s)://<your public host>/webhook/event (event subscription request URL)"
        if settings.feishu_event_mode == "webhook" else
        "  Events      over Feishu's long connection (`listen`; no public URL needed)",
        f"  User login  open {base}/oauth/login ({how})",
        f"  Database    {_shown(settings.effective_database_url)}",
        f"  Redis       {_shown(settings.redis_url)}",
    ]
    if sandbox:
        lines += [
            f"  Sandbox     {sandbox} (emulated Feishu)",
            f"    say something:   curl -s -XPOST {sandbox}/sandbox/chat -d '{{\"text\": \"/ping\"}}'",
            f"    see bot replies: curl -s {sandbox}/sandbox/sent",
            "    try: /help, /status, /export start 2022-01-01 2022-03-31 (after `export auth`)",
        ]
    if pong is not None:
        lines.append("  ✓ /ping → pong round trip through the sandbox works" if pong
                     else "  ✗ /ping got no pong within 30 s (see the logs above)")
    return [*lines, "Press Ctrl-C to stop.", ""]


def _shown(url: str) -> str:
    """A URL for people: a local file relative to here, a password hidden."""
    from bot.db import sqlite_file
    from bot.masking import mask_url

    scheme, _, rest = url.partition("://")
    path = None
    if scheme == "unix":
        path = rest.split("?", 1)[0]
    elif scheme.startswith("sqlite"):
        path = sqlite_file(url)
    if path:
        relative = os.path.relpath(path)
        return relative if not relative.startswith("..") else str(path)
    return mask_url(url)


def _upgrade_if_ours(engine, settings: Settings) -> None:
    """The embedded SQLite database (and any empty one) is brought to this build's schema, after
    a backup; a configured database that is behind is left to `feishu-bridge db upgrade`, run
    deliberately (the Procfile's release phase)."""
    from bot.migrate import require_current, status, upgrade

    if settings.database_url and status(engine).state != "empty":
        require_current(engine)
        return
    moved = upgrade(engine, backup_dir=settings.var_dir / "backups")
    if moved.changed:
        print(f"✓ database schema {moved.before or 'created'} → {moved.after}"
              + (f" (backup: {moved.backup})" if moved.backup else ""), flush=True)


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
