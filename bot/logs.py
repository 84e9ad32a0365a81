"""Logging: JSON lines when not on a TTY (text on one), scrubbed of every registered secret.

Every record carries the RQ job and the Feishu event it was logged for (`job_id`, `event_id`),
RQ's per-job chatter is DEBUG, and third-party deprecation warnings are silenced once.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from contextvars import ContextVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from bot.config import Settings
from bot.masking import register_secrets, scrub

# The Feishu event being processed in this thread (see bot/intake/processing.py).
current_event_id: ContextVar[str | None] = ContextVar("current_event_id", default=None)


@contextlib.contextmanager
def event_context(event_id: str) -> Iterator[None]:
    """Tag every record logged inside with this event id."""
    token = current_event_id.set(event_id)
    try:
        yield
    finally:
        current_event_id.reset(token)


def _current_job_id() -> str | None:
    rq_job = sys.modules.get("rq.job")  # a process that never loaded RQ runs no job
    job = rq_job.get_current_job() if rq_job is not None else None
    return job.id if job is not None else None


class ContextFilter(logging.Filter):
    """Adds `job_id` (the RQ job running) and `event_id` (the event being processed), unless the
    call passed its own in `extra` (RQ does, for a failed job's traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            job_id = _current_job_id()
            if job_id is not None:
                record.job_id = job_id
        if getattr(record, "event_id", None) is None:
            event_id = current_event_id.get()
            if event_id is not None:
                record.event_id = event_id
        return True


class ScrubbingJsonFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class ScrubbingTextFormatter(logging.Formatter):
    """`12:00:01 INFO    logger: message key=value … [job=… event=…]`: the `extra` fields and
    the ids on the message's first line (a traceback follows on the next ones)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = " ".join(f"{key}={_shown(value)}" for key, value in record.__dict__.items()
                          if key not in _NOT_EXTRA and not key.startswith("_"))
        tags = " ".join(f"{tag}={value}" for tag, value in (
            ("job", getattr(record, "job_id", None)), ("event", getattr(record, "event_id", None)))
            if value)
        suffix = (f" {fields}" if fields else "") + (f" [{tags}]" if tags else "")
        if not suffix:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first}{suffix}{newline}{rest}"

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


_NOT_EXTRA = frozenset({*RESERVED_ATTRS, "taskName", "job_id", "event_id"})


def _shown(value: object) -> str:
    return repr(value) if isinstance(value, str) and (not value or " " in value) else str(value)


class _DropSdkEventTracebacks(logging.Filter):
    """lark-oapi logs a full traceback for every rejected webhook call; we log one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("handle event failed")


# -- RQ: one INFO line per job (several, in fact) is noise ----------------------------------

# RQ's INFO messages (their format strings) that are routine: per job, per cron enqueue, per
# maintenance pass. A failing job still logs at WARNING/ERROR; worker start and stop stay INFO.
_ROUTINE_RQ_MESSAGES = frozenset({
    "Worker %s: %s: %s (%s)",  # dequeued "queue: description (id)", and "queue: Job OK (id)"
    "Worker %s: %s: %s",  # dequeued, without description
    "Successfully completed %s job in %ss on worker %s",
    "Successfully completed job %s in %ss on worker %s",
    "Worker %s: job %s result is kept for %s seconds",
    "Worker %s: job %s result discarded immediately",
    "Worker %s: cleaning registries for queue: %s",
    "Worker %s: subscribing to channel %s",
    "Worker %s: unsubscribing from channel %s",
})
# rq.cron formats its messages itself (f-strings): these prefixes are routine
_ROUTINE_RQ_PREFIXES = ("Enqueued job ", "Registered '")
_ROUTINE_RQ_SUFFIXES = (": registering birth...", ": registering death...")
ROUTINE_RQ_LOGGERS = ("rq.worker", "rq.cron")


class RoutineRqToDebug(logging.Filter):
    """Demote RQ's routine INFO lines to DEBUG (shown only when LOG_LEVEL=DEBUG): with a card
    refresh every 3 s and a Coze poll every 5 s they were 240 lines a minute on an idle stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not is_routine_rq(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def is_routine_rq(record: logging.LogRecord) -> bool:
    msg = record.msg if isinstance(record.msg, str) else ""
    return (msg in _ROUTINE_RQ_MESSAGES or msg.startswith(_ROUTINE_RQ_PREFIXES)
            or msg.endswith(_ROUTINE_RQ_SUFFIXES))


def _install_once(logger: logging.Logger, kind: type[logging.Filter]) -> None:
    if not any(isinstance(f, kind) for f in logger.filters):
        logger.addFilter(kind())


# -- warnings ---------------------------------------------------------------------------------

_THIRD_PARTY = r"(authlib|cozepy|lark_oapi|pkg_resources|google\.protobuf)(\.|$)"


def quiet_third_party_warnings() -> None:
    """Silence dependencies' deprecation warnings (ours stay visible): authlib's
    AuthlibDeprecationWarning, printed by every process that imports cozepy, and
    lark-oapi's pkg_resources ones. Call before those are imported; forks inherit it."""
    # authlib.deprecate puts an "always" filter for its warning first when imported; import it
    # now (a few lines, nothing else) so the filters below go in front of that one.
    with contextlib.suppress(ImportError):
        import authlib.deprecate  # noqa: F401
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=_THIRD_PARTY)
    warnings.filterwarnings("ignore", message=r"authlib\.jose module is deprecated")
    warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated as an API")
    warnings.filterwarnings("ignore", message=r"Deprecated call to `pkg_resources\.declare_namespace")


# -- set-up -------------------------------------------------------------------------------------


def configure_logging(settings: Settings, stream=None) -> None:
    quiet_third_party_warnings()
    register_secrets(settings.secret_values())
    stream = stream or sys.stderr
    as_json = settings.log_json if settings.log_json is not None else not stream.isatty()
    handler = logging.StreamHandler(stream)
    if as_json:
        handler.setFormatter(
            ScrubbingJsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            ScrubbingTextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_feishu_bridge", False):
            root.removeHandler(existing)
    handler._feishu_bridge = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    logging.captureWarnings(True)  # our own warnings: one scrubbed (JSON) record each

    for name in ROUTINE_RQ_LOGGERS:
        _install_once(logging.getLogger(name), RoutineRqToDebug)

    lark_logger = logging.getLogger("Lark")
    lark_logger.addFilter(_DropSdkEventTracebacks())
    for h in lark_logger.handlers:
        h.addFilter(_DropSdkEventTracebacks())
    # The SDK installs its own stderr handler; route through ours so lines are scrubbed too.
    lark_logger.handlers = []
    lark_logger.propagate = True
