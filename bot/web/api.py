"""`/api/v1/…`: the REST API, behind the admin token (`Authorization: Bearer <ADMIN_TOKEN>`)."""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, request

from bot.caches import store
from bot.caches.export import select_rows
from bot.caches.query import QueryError, parse_where
from bot.caches.sources import SourceError
from bot.services import Services
from bot.web import coze_api

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.register_blueprint(coze_api.bp)  # nested: the admin-token check below covers it


@bp.before_request
def require_admin_token():
    services: Services = current_app.extensions["feishu_bridge"]
    expected = services.settings.admin_token.get_secret_value()
    if not expected:
        return jsonify(code=403, msg="the API is disabled: set ADMIN_TOKEN"), 403
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return jsonify(code=401, msg="missing or wrong admin token"), 401
    return None


@bp.get("/cache")
def cache_summary():
    services: Services = current_app.extensions["feishu_bridge"]
    return jsonify(sources=store.summary(services.engine))


@bp.get("/cache/<source>/<table>")
def cache_rows(source: str, table: str):
    services: Services = current_app.extensions["feishu_bridge"]
    try:
        limit = min(int(request.args.get("limit", 100)), 5000)
        offset = max(int(request.args.get("offset", 0)), 0)
    except ValueError:
        return jsonify(code=400, msg="limit and offset must be integers"), 400
    try:
        found_source, found_table = store.find_table(services.engine, source, table)
    except SourceError as exc:
        return jsonify(code=404, msg=str(exc)), 404
    fields = store.table_fields(services.engine, found_source.id, found_table.table_id)
    types = {f.name: f.type for f in fields}
    try:
        conditions = parse_where(request.args.getlist("where"), list(types))
    except QueryError as exc:
        return jsonify(code=422, msg=str(exc)), 422
    rows = select_rows(store.iter_records(services.engine, found_source.id, found_table.table_id), types,
                       conditions, limit=limit, offset=offset)
    return jsonify(source=source, table=found_table.name, table_id=found_table.table_id,
                   fields=[{"name": f.name, "type": f.type, "field_id": f.field_id} for f in fields],
                   records=rows, count=len(rows), total=found_table.record_count, offset=offset)
