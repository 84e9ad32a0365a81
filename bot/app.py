"""The Flask app factory (what the web process serves, behind `bot.processes.asgi`)."""

from __future__ import annotations

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from bot.config import Settings, load_settings
from bot.logs import configure_logging
from bot.services import Services, build_services


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    settings = settings or (services.settings if services else load_settings())
    configure_logging(settings)  # first: it also silences the deprecation warnings of imports below
    from bot.web import EXTENSION, api, dashboard, oauth, openapi, ops, webhook

    services = services or build_services(settings)

    app = Flask("feishu_bridge")
    app.config["MAX_CONTENT_LENGTH"] = webhook.MAX_BODY_BYTES
    app.extensions[EXTENSION] = services
    webhook.install(app, services)

    app.register_blueprint(webhook.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(dashboard.bp)
    # No signed client-side session: the dashboard's sessions live in Redis (bot/web/sessions.py).
    if settings.redis_url:
        dashboard.mount_rq_dashboard(app, settings.redis_url)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(code=exc.code, msg=exc.description), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        app.logger.exception("unhandled error",
                             extra={"method": request.method, "path": request.path})
        return jsonify(code=503, msg="temporarily unavailable"), 503

    return app
