"""`feishu-bridge up --sandbox`: the whole product from one command, with no credentials."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bot.processes.redis_server import EmbeddedRedis
from bot.processes.up import SANDBOX_ADMIN_TOKEN
from sandbox.seed import QUALITY_NODE
from tests import processes
from tests.logvault import VAULT
from tests.servers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ROUND_TRIP_OK = "/ping → pong round trip through the sandbox works"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FEISHU_", "DATABASE_", "REDIS_", "PROMETHEUS_", "VAR_DIR", "PORT"))}
    env.update(extra)
    return env


def _read_until(process: subprocess.Popen, needle: str, timeout: float) -> str:
    """Collect the merged output until `needle` appears (or fail with what was seen)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    os.set_blocking(process.stdout.fileno(), False)
    buffer = b""
    while time.monotonic() < deadline:
        chunk = process.stdout.read()
        if chunk:
            buffer += chunk
            text = buffer.decode(errors="replace")
            if needle in text:
                return text
        elif process.poll() is not None:
            break
        time.sleep(0.2)
    seen.append(buffer.decode(errors="replace"))
    raise AssertionError(f"did not see {needle!r}; output:\n{''.join(seen)[-4000:]}")


def _stop(process: subprocess.Popen, timeout: float = 40) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout)


def spawn_up_sandbox(cwd: Path) -> tuple[subprocess.Popen, int, int]:
    """`up --sandbox` with one worker in `cwd`, output merged into a pipe (not a TTY: JSON logs)."""
    port, sandbox_port = free_port(), free_port()
    process = processes.spawn(
        [sys.executable, "-m", "bot.cli", "up", "--sandbox", "--port", str(port),
         "--sandbox-port", str(sandbox_port), "--workers", "1"],
        cwd=cwd, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    return process, port, sandbox_port


def test_up_sandbox_runs_everything_and_stops_cleanly(tmp_path):
    process, port, sandbox_port = spawn_up_sandbox(tmp_path)
    try:
        output = _read_until(process, ROUND_TRIP_OK, timeout=120)
        VAULT.lines.append(output)  # for the suite's secrets scan
        assert f"Feishu Bridge is up on http://127.0.0.1:{port}" in output
        assert "/webhook/event" in output
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 200
        # The round trip is real: the sandbox has the bot's pong reply on record.
        sent = httpx.get(f"http://127.0.0.1:{sandbox_port}/sandbox/sent", timeout=5).json()
        assert [m["body"]["content"] for m in sent["items"]] == ['{"text": "pong"}']
        # User OAuth works out of the box: login → sandbox approval → callback stores the grant.
        assert f"open http://127.0.0.1:{port}/oauth/login" in output
        # Starting a login needs the dashboard session (anonymous visitors are sent to /login).
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as browser:
            assert "/login" in browser.get("/oauth/login").headers["location"]
            answer = browser.post("/login", data={"token": SANDBOX_ADMIN_TOKEN},
                                  headers={"Origin": f"http://127.0.0.1:{port}"})
            assert answer.status_code == 302, answer.text
            login = browser.get("/oauth/login", follow_redirects=True)
        assert login.status_code == 200 and "授权成功" in login.text, login.text
        # Sandbox data lives in its own var/ subdirectory, with embedded SQLite and Redis.
        assert (tmp_path / "var" / "sandbox" / "feishu-bridge.db").exists()
        redis = EmbeddedRedis(tmp_path / "var" / "sandbox" / "redis")
        assert redis.is_running()
        # A second terminal in the same directory, nothing set: its commands find the running
        # stack (var/stack.json) and use the sandbox's database and Redis.
        _second_terminal_sees_the_stack(tmp_path, sandbox_port, redis.url)
    finally:
        code = _stop(process)
    assert code == 0
    assert not (tmp_path / "var" / "stack.json").exists(), "up left its state file behind"
    assert not redis.is_running(), "embedded redis left running after shutdown"
    assert process.poll() is not None
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def _second_terminal_sees_the_stack(cwd: Path, sandbox_port: int, redis_url: str) -> None:
    def cli(*argv: str):
        done = processes.run([sys.executable, "-m", "bot.cli", *argv, "--json"], cwd=cwd, env=_clean_env(),
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        VAULT.lines.append(done.stdout + done.stderr)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (argv, done.stderr)
        return json.loads(done.stdout)

    stack = json.loads((cwd / "var" / "stack.json").read_text())
    assert stack["sandbox_port"] == sandbox_port and stack["redis_url"] == redis_url
    events = cli("events")  # the /ping typed into the sandbox chat, recorded by the stack's web app
    assert "im.message.receive_v1" in {r["event_type"] for r in events["recent"]}, events
    assert cli("coze", "list") == []  # the sandbox database is at head (no "run db upgrade")
    shown = cli("config", "check")["settings"]
    assert shown["FEISHU_BASE_URL"] == f"http://127.0.0.1:{sandbox_port}" and shown["REDIS_URL"] == redis_url
    assert not (cwd / "var" / "feishu-bridge.db").exists()  # nothing went to the unswitched var/


def _readme_command(number: int) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- setup-command-{number} -->\s*```(?:bash|sh)?\n(.+?)\n```", text, re.S)
    assert match, f"README has no setup command {number}"
    return match.group(1).strip()


@pytest.mark.skipif(os.environ.get("FB_CLEAN_CLONE_TEST") != "1" or shutil.which("git") is None,
                    reason="set FB_CLEAN_CLONE_TEST=1 (CI does) to install into a fresh clone")
def test_readme_command_1_on_a_clean_clone(tmp_path):
    """Clone the committed tree, run README command 1 verbatim, and see the /ping round trip."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    command = _readme_command(1)
    env = _clean_env(PORT=str(free_port()))
    process = processes.spawn(["bash", "-c", command], cwd=clone, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _read_until(process, ROUND_TRIP_OK, timeout=600)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_up_sandbox_over_the_long_connection_answers_ping_and_card_buttons(tmp_path):
    """`up --sandbox --events websocket`: no webhook involved — /ping's pong and a card button's
    toast and patched card all go over the long connection, through lark-oapi's client."""
    port, sandbox_port = free_port(), free_port()
    process = processes.spawn(
        [sys.executable, "-m", "bot.cli", "up", "--sandbox", "--events", "websocket", "--port", str(port),
         "--sandbox-port", str(sandbox_port), "--workers", "1"],
        cwd=tmp_path, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    try:
        output = _read_until(process, ROUND_TRIP_OK, timeout=120)
        VAULT.lines.append(output)
        assert "over Feishu's long connection" in output and "/webhook/event" not in output
        seen = httpx.get(f"{sandbox}/sandbox/long-connection", timeout=5).json()
        assert seen["event_mode"] == "websocket" and len(seen["connections"]) == 1
        attempts = httpx.get(f"{sandbox}/sandbox/deliveries", timeout=5).json()
        assert attempts and {a["transport"] for a in attempts["items"]} == {"websocket"}, attempts

        added = processes.run([sys.executable, "-m", "bot.cli", "sources", "add", QUALITY_NODE,
                               "--name", "quality", "--kind", "wiki"], cwd=tmp_path, env=_clean_env(),
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        assert added.returncode == 0, added.stdout
        asked = httpx.post(f"{sandbox}/sandbox/chat", json={"text": "/sync quality"}, timeout=5).json()

        def card() -> dict | None:
            items = httpx.get(f"{sandbox}/sandbox/sent", params={"parent_id": asked["message_id"]},
                              timeout=5).json()["items"]
            return next((m for m in items if m["msg_type"] == "interactive"), None)

        deadline = time.monotonic() + 60
        while card() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        sync_card = card()
        assert sync_card is not None, "no /sync card"
        content = json.loads(sync_card["body"]["content"])
        [button] = [a for e in content["elements"] if e["tag"] == "action" for a in e["actions"]]
        clicked = httpx.post(f"{sandbox}/sandbox/card-action", timeout=30,
                             json={"message_id": sync_card["message_id"], "value": button["value"]}).json()
        assert clicked["transport"] == "websocket" and clicked["webhook_status"] == 200, clicked
        assert clicked["answer"] == {"toast": {"type": "info", "content": "已收到，正在处理…"}}

        def patched() -> bool:
            versions = httpx.get(f"{sandbox}/sandbox/messages/{sync_card['message_id']}/history",
                                 timeout=5).json()["versions"]
            return len(versions) > 1 and not [e for e in versions[-1]["elements"] if e["tag"] == "action"]

        deadline = time.monotonic() + 60
        while not patched() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert patched(), "the card was not patched after the click"
    finally:
        code = _stop(process)
    assert code == 0
