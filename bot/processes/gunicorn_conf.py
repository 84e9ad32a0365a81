"""gunicorn settings for the web process (see `web.py` beside it for the command line).

Sizes and port come from the settings object (PORT, WEB_WORKERS, WEB_THREADS — what Heroku-style
platforms set). Binds 0.0.0.0 unless HOST says otherwise: on a platform the router must reach it;
`feishu-bridge up` passes HOST=127.0.0.1 for local runs.
"""

import gc
import os
from pathlib import Path

# lark-oapi takes seconds of CPU to import. Importing it here, in the master, means every
# worker forks with it already loaded instead of each paying for it again.
import lark_oapi  # noqa: F401

from bot.config import load_settings

_settings = load_settings()
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str((_settings.var_dir / "metrics").resolve()))
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{_settings.port}"
workers = _settings.web_workers
# asyncio reads requests (a slow client costs a coroutine, not a thread) and WEB_THREADS threads
# per process run Flask (bot/processes/asgi.py). Webhook requests mostly wait on the intake
# recorder's batch; more threads mean bigger batches (bench/intake.py: 32 well ahead of 8).
worker_class = "asgi"  # note: gunicorn 27's asgi worker sets no cap on open connections
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
control_socket_disable = True  # several bridges (and tests) on one host must not share ~/.gunicorn


# lark-oapi leaves ~400k long-lived objects; a full collection walking them stalls a worker for
# hundreds of milliseconds (bench/intake.py saw it as p99 spikes). Freezing moves what exists
# now out of the collector's sight, in the master before forking and again once a worker has
# built the app; it also keeps those pages shared between workers (no copy-on-write from GC).
gc.freeze()


def on_starting(server):
    """Refuse to serve a database that is not at this build's schema (one line, exit 1)."""
    import sys

    from bot.migrate import DatabaseNotReady, require_current_url

    try:
        require_current_url(_settings.effective_database_url)
    except DatabaseNotReady as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


def post_worker_init(worker):
    gc.collect()
    gc.freeze()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
