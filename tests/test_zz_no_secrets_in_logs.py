"""Runs last (file order): nothing the suite logged contains a secret, token or cookie value."""

from __future__ import annotations

import re

from sandbox.state import SANDBOX_APP_SECRET, SANDBOX_ENCRYPT_KEY, SANDBOX_VERIFICATION_TOKEN
from tests.logvault import VAULT

# Sandbox-issued tokens: tenant (t-), user access (u-), refresh (ur-), authorisation codes.
TOKEN_SHAPE = re.compile(r"\b(?:t|u|ur|code)-sandbox\d{12}[0-9a-f]{16}\b")


def test_no_secret_or_token_in_any_captured_log(sandbox_server):
    _, state = sandbox_server
    text = VAULT.text()
    assert len(VAULT.lines) > 50, "the scan must see the suite's logs"
    with state.lock:
        issued = [*state.tenant_tokens, *state.user_tokens, *state.refresh_tokens, *state.auth_codes]
    secrets = [SANDBOX_APP_SECRET, SANDBOX_ENCRYPT_KEY, SANDBOX_VERIFICATION_TOKEN,
               "admin-token-for-tests-0001", *issued]
    leaked = [s[:8] + "…" for s in secrets if s in text]
    assert leaked == []
    shapes = TOKEN_SHAPE.findall(text)
    assert shapes == []
