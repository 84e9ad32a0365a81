"""`/api/v1/…`: the REST API, behind the admin token (`Authorization: Bearer <ADMIN_TOKEN>`)."""

from __future__ import annotations

import hmac

from flask import Blueprint, jsonify, request

from bot.caches import store
from bot.caches.lookup import query_table
from bot.caches.query import QueryError
from bot.caches.sources import SourceError
from bot.web import app_services, coze_api
from bot.web.dashboard import record_failure, throttled

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.register_blueprint(coze_api.bp)  # nested: the admin-token check below covers it


@bp.before_request
def require_admin_token():
    services = app_services()
    expected = services.settings.admin_token.get_secret_value()
    if not expected:
        return jsonify(code=403, msg="the API is disabled: set ADMIN_TOKEN"), 403
    refusal = throttled("api")  # a client guessing tokens is locked out for a while
    if refusal is not None:
        return refusal
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        record_failure("api")
        return jsonify(code=401, msg="missing or wrong admin token"), 401
    return None


@bp.get("/cache")
def cache_summary():
    services = app_services()
    return jsonify(sources=store.summary(services.engine))


@bp.get("/cache/<source>/<table>")
def cache_rows(source: str, table: str):
    services = app_services()
    try:
        limit = min(int(request.args.get("limit", 100)), 5000)
        offset = max(int(request.args.get("offset", 0)), 0)
    except ValueError:
        return jsonify(code=400, msg="limit and offset must be integers"), 400
    try:
        found = query_table(services.engine, source, table, request.args.getlist("where"),
                            limit=limit, offset=offset)
    except SourceError as exc:
        return jsonify(code=404, msg=str(exc)), 404
    except QueryError as exc:
        return jsonify(code=422, msg=str(exc)), 422
    return jsonify(source=source, table=found.table.name, table_id=found.table.table_id,
                   fields=[{"name": f.name, "type": f.type, "field_id": f.field_id} for f in found.fields],
                   records=found.rows, count=len(found.rows), total=found.table.record_count, offset=offset)
