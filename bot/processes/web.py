"""How the web process is started: gunicorn with `gunicorn_conf.py` (beside this module) serving
the Flask app behind `asgi.py`'s whole-body front — for `feishu-bridge web`, `up` and the
Procfile alike."""

from __future__ import annotations

import os
import sys

GUNICORN_CONFIG = "python:bot.processes.gunicorn_conf"
APP = "bot.processes.asgi:create_asgi_app()"


def gunicorn_argv() -> list[str]:
    """Arguments after the Python executable."""
    return ["-m", "gunicorn", "-c", GUNICORN_CONFIG, APP]


def exec_gunicorn(env: dict[str, str]) -> None:
    """Replace this process with gunicorn (the platform then signals gunicorn directly)."""
    os.execvpe(sys.executable, [sys.executable, *gunicorn_argv()], env)
