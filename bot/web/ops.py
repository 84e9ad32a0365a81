"""Operational endpoints: health for load balancers, metrics for Prometheus."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from bot.metrics import render
from bot.web import app_services

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    services = app_services()
    checks: dict[str, str] = {}
    try:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        services.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if healthy else "unavailable", checks=checks), 200 if healthy else 503


@bp.get("/metrics")
def metrics():
    services = app_services()
    return Response(render(lambda: services.queues), mimetype=CONTENT_TYPE_LATEST)
