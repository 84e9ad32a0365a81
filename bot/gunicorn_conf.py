"""gunicorn settings for the web process (`gunicorn -c python:bot.gunicorn_conf 'bot.app:create_app()'`).

Reads PORT / WEB_WORKERS / WEB_THREADS like Heroku-style platforms expect, and prepares the
shared directory prometheus-client needs to aggregate metrics across workers.
"""

import os
from pathlib import Path

# lark-oapi takes seconds of CPU to import. Importing it here, in the master, means every
# worker forks with it already loaded instead of each paying for it again.
import lark_oapi  # noqa: F401

_var = Path(os.environ.get("VAR_DIR", "var"))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str((_var / "metrics").resolve()))
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_WORKERS", "4"))
threads = int(os.environ.get("WEB_THREADS", "8"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
control_socket_disable = True  # several bridges (and tests) on one host must not share ~/.gunicorn


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
