"""The ceiling for bench/intake.py: a Flask endpoint that reads the body and answers 200."""

from flask import Flask, jsonify, request

from bot.config import load_settings
from bot.processes.asgi import ASGIApp, serve


def create_app() -> Flask:
    app = Flask("bare")

    @app.post("/webhook/event")
    def receive():
        request.get_data()
        return jsonify(code=0, msg="success")

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return app


def create_asgi_app() -> ASGIApp:
    """Served like the bridge (gunicorn's asgi worker, the whole-body front)."""
    return serve(create_app(), load_settings())
