"""Run the sandbox as a threaded HTTP server (a single process: its world lives in memory)."""

from __future__ import annotations

import logging
import threading

from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.app import create_sandbox_app
from sandbox.state import SandboxConfig

log = logging.getLogger(__name__)


def start_in_thread(config: SandboxConfig, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """Start in a background thread (tests, `up`); `server.shutdown()` stops it."""
    server = make_server(host, port, create_sandbox_app(config), threaded=True)
    threading.Thread(target=server.serve_forever, name="sandbox", daemon=True).start()
    return server


def serve(config: SandboxConfig, host: str, port: int) -> None:
    server = make_server(host, port, create_sandbox_app(config), threaded=True)
    log.info("sandbox listening", extra={"url": f"http://{host}:{server.server_port}"})
    try:
        server.serve_forever()
    finally:
        server.app.extensions["sandbox"].sender.close()  # type: ignore[attr-defined]
