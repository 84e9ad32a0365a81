"""Logs are structured and never contain a secret."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from subprocess import PIPE

import pytest
from rq import Queue, SimpleWorker

from bot.intake import receipts
from bot.intake.parse import ParsedEvent
from bot.intake.schedule import enqueue_events
from bot.logs import configure_logging, event_context
from bot.masking import clear_registered, mask, scrub
from tests import processes
from tests.conftest import make_settings
from tests.helpers import sender, text_message_event

ROOT = Path(__file__).resolve().parent.parent


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


# -- quiet, useful logs ---------------------------------------------------------------------


@pytest.fixture
def logged(tmp_path) -> Iterator[io.StringIO]:
    """configure_logging into a buffer (JSON); the root logger and warnings as they were after."""
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with warnings.catch_warnings():
        configure_logging(make_settings(tmp_path, log_json=True), stream=stream)
        try:
            yield stream
        finally:
            logging.captureWarnings(False)
            root.handlers[:] = handlers
            root.setLevel(level)
            clear_registered()


def _records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def succeed() -> str:
    return "fine"


def fail_loudly() -> None:
    logging.getLogger("bot.test").error("the job went wrong")
    raise RuntimeError("on purpose")


def test_rq_logs_a_job_at_debug_and_a_failure_with_its_job_id(logged, redis_conn):
    queue = Queue("logging-test", connection=redis_conn)
    ok = queue.enqueue("tests.test_logging.succeed")
    bad = queue.enqueue("tests.test_logging.fail_loudly")
    worker = SimpleWorker([queue], connection=redis_conn)
    worker.log_result_lifespan = False  # as bot/processes/worker.py does
    worker.work(burst=True, logging_level="INFO")
    logging.getLogger("rq.cron").info("Enqueued job refresh_chat_cards to queue default")

    records = _records(logged)
    assert not [r for r in records if ok.id in r["message"]], "a job that went well is DEBUG chatter"
    assert not [r for r in records if r["logger"] == "rq.cron"]
    errors = [r for r in records if r["level"] == "ERROR"]
    assert {r["message"].split("\n")[0] for r in errors} >= {"the job went wrong"}
    assert len(errors) == 2 and all(r["job_id"] == bad.id for r in errors), errors  # ours and RQ's
    assert any(r["level"] == "INFO" and "started with PID" in r["message"] for r in records)


def test_routine_rq_lines_show_at_debug_level(logged, redis_conn):
    logging.getLogger().setLevel(logging.DEBUG)
    queue = Queue("logging-test", connection=redis_conn)
    job = queue.enqueue("tests.test_logging.succeed")
    SimpleWorker([queue], connection=redis_conn).work(burst=True, logging_level="DEBUG")
    mine = [r for r in _records(logged) if job.id in r["message"] and "Job OK" in r["message"]]
    assert [r["level"] for r in mine] == ["DEBUG"]


def test_a_failing_event_logs_its_event_and_job_ids(logged, services, sandbox):
    # a /ping whose message Feishu does not know: the pong reply fails, the handler raises
    doc = text_message_event(sender(), "/ping", event_id="ev-fails", message_id="om_missing")
    receipt_id = receipts.record(services.engine,
                                 ParsedEvent("ev-fails", "im.message.receive_v1", "2.0", doc))
    job = enqueue_events(services.queues["default"], [receipt_id], [0])  # one retry
    SimpleWorker([services.queues["default"]], connection=services.redis).work(burst=True)

    records = _records(logged)
    errors = [r for r in records if r["level"] == "ERROR"]
    assert errors and all(r.get("job_id") == job.id for r in errors), errors
    commands = [r for r in errors if r["message"] == "chat command failed"]
    assert len(commands) == 2 and all(r["event_id"] == "ev-fails" for r in commands)  # each attempt
    warnings_ = [r for r in records if r["message"] == "event handler failed"]
    assert {(r["event_id"], r["job_id"], r["receipt_id"]) for r in warnings_} == {
        ("ev-fails", job.id, receipt_id)}


def test_text_lines_show_extras_and_ids(tmp_path):
    stream = io.StringIO()
    settings = make_settings(tmp_path, log_json=False)
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        configure_logging(settings, stream=stream)
        log = logging.getLogger("bot.test")
        with event_context("ev-7"):
            log.info("event processed", extra={"receipt_id": 3, "outcome": "ping: ok"})
            try:
                raise ValueError("nope")
            except ValueError:
                log.exception("failed")
        log.info("plain")
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = handlers
        clear_registered()
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO    bot\.test: event processed receipt_id=3 "
                        r"outcome='ping: ok' \[event=ev-7\]", lines[0]), lines[0]
    assert lines[1].endswith("ERROR   bot.test: failed [event=ev-7]")
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1].endswith("INFO    bot.test: plain")


def test_third_party_deprecation_warnings_are_silenced_and_ours_are_not(tmp_path):
    probe = ("import warnings, sys\n"
             "if sys.argv[1] == 'quiet':\n"
             "    from bot.logs import quiet_third_party_warnings; quiet_third_party_warnings()\n"
             "import cozepy\n"
             "warnings.warn('our own deprecation', DeprecationWarning)\n")
    runs = {mode: processes.run([sys.executable, "-c", probe, mode], cwd=ROOT, stdout=PIPE, stderr=PIPE,
                                text=True, timeout=120) for mode in ("loud", "quiet")}
    assert "AuthlibDeprecationWarning" in runs["loud"].stderr  # else this test proves nothing
    assert "AuthlibDeprecationWarning" not in runs["quiet"].stderr, runs["quiet"].stderr
    assert "our own deprecation" in runs["quiet"].stderr  # __main__'s warnings show by default
