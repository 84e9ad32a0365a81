"""Logs are structured and never contain a secret."""

from __future__ import annotations

import io
import json
import logging

from bot.logs import configure_logging
from bot.masking import clear_registered, mask, scrub
from tests.conftest import make_settings


def test_mask():
    assert mask("") == "(unset)"
    assert mask("short") == "****"
    assert mask("a-long-secret-value-1234") == "****1234"


def test_json_logs_scrub_registered_secrets(tmp_path):
    stream = io.StringIO()
    settings = make_settings(tmp_path, feishu_app_secret="super-secret-app-value")
    try:
        configure_logging(settings, stream=stream)
        log = logging.getLogger("bot.test")
        log.warning("token is %s", "super-secret-app-value", extra={"detail": "super-secret-app-value!"})
        try:
            raise RuntimeError("failed with super-secret-app-value")
        except RuntimeError:
            log.exception("boom")
        logging.getLogger("Lark").error("sdk says super-secret-app-value")
    finally:
        clear_registered()
    output = stream.getvalue()
    assert "super-secret-app-value" not in output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert lines[0]["level"] == "WARNING" and lines[0]["message"] == "token is ****alue"
    assert any(line.get("logger") == "Lark" for line in lines)
    assert scrub("nothing secret here") == "nothing secret here"


def test_credentials_in_urls_are_masked_without_registration():
    line = ("HTTP Request: GET http://localhost:8000/oauth/callback?code=code-abc123&state=xyz "
            "and /x?access_token=u-1&page=2")
    assert scrub(line) == ("HTTP Request: GET http://localhost:8000/oauth/callback?code=****&state=**** "
                           "and /x?access_token=****&page=2")
