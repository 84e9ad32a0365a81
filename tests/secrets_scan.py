"""The suite-wide secrets check: nothing the suite logged — in this process or in the log files
of the processes it started — contains a secret, token or cookie value.

It runs when the session ends (conftest's `pytest_sessionfinish`), whatever was selected (`-k`,
one file, the whole suite), fails the session if it finds anything, and reports under
"secrets scan" in the terminal summary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pytest

from sandbox.seed_ads import ADS_SECRET
from sandbox.state import SANDBOX_APP_SECRET, SANDBOX_ENCRYPT_KEY, SANDBOX_VERIFICATION_TOKEN, SandboxState
from tests.logvault import VAULT

# Sandbox-issued tokens: tenant (t-), user access (u-), refresh (ur-), authorisation codes; the
# ads platform's access and refresh tokens (ads-sandbox-at-, ads-sandbox-rt-).
TOKEN_SHAPE = re.compile(r"\b(?:(?:t|u|ur|code)-sandbox\d{12}[0-9a-f]{16}"
                         r"|ads-sandbox-(?:at|rt)-[0-9a-f]{32})\b")
FIXED_SECRETS = (
    SANDBOX_APP_SECRET, SANDBOX_ENCRYPT_KEY, SANDBOX_VERIFICATION_TOKEN, ADS_SECRET,
    "admin-token-for-tests-0001-0123456789abcdef",
)

_sandboxes: list[SandboxState] = []
_result: str | None = None


def watch_sandbox(state: SandboxState) -> None:
    """Also look for every token this sandbox issues (its state outlives the server)."""
    _sandboxes.append(state)


def issued_tokens() -> list[str]:
    tokens: list[str] = []
    for state in _sandboxes:
        with state.lock:
            tokens += [*state.tenant_tokens, *state.user_tokens, *state.refresh_tokens, *state.auth_codes]
            tokens += list(state.ads.issued)
    return tokens


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """What leaked, shortened so the report does not leak it again."""
    found = [s[:8] + "…" for s in dict.fromkeys(secrets) if s and s in text]
    return found + [shape[:12] + "…" for shape in TOKEN_SHAPE.findall(text)]


def check_at_session_end(session: pytest.Session) -> None:
    global _result
    text = VAULT.text()
    found = leaks(text, [*FIXED_SECRETS, *issued_tokens()])
    scanned = f"{len(VAULT.lines)} log records and {len(VAULT.files)} child log files"
    if found:
        _result = f"FAILED: {len(found)} secret(s) in {scanned}: {', '.join(sorted(set(found)))}"
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        _result = f"no secret in {scanned}"


def pytest_terminal_summary(terminalreporter) -> None:
    if _result is not None:
        terminalreporter.write_sep("-", "secrets scan")
        failed = _result.startswith("FAILED")
        terminalreporter.write_line(_result, red=failed, green=not failed)
