"""`/api/v1/coze-sync-templates/…`: the Coze sync template API as the seed documents it
(nested in the admin-token-protected API blueprint)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify, request
from pydantic import ValidationError

from bot.coze import manual, outbox, schedule, templates
from bot.coze.spec import Problem, SpecError, TemplateCreate, TemplateFields
from bot.models import CozeManualSync
from bot.services import Services
from bot.web import app_services

bp = Blueprint("coze_templates", __name__, url_prefix="/coze-sync-templates")


def _fail(status: int, message: str, errors: list[dict] | None = None):
    body: dict[str, Any] = {"success": False, "message": message}
    if errors is not None:
        body["errors"] = errors
    return jsonify(body), status


def _json_or_none() -> Any:
    """The body as JSON, or None when it is not JSON — including JSON nested so deep that the
    parser hits the recursion limit (Flask's `silent` only swallows ValueError)."""
    try:
        return request.get_json(force=True, silent=True)
    except RecursionError:
        return None


def _body() -> dict[str, Any]:
    body = _json_or_none()
    if not isinstance(body, dict):
        raise _BadBody("the request body must be a JSON object")
    return body


class _BadBody(ValueError):
    pass


@bp.errorhandler(_BadBody)
def _bad_body(exc: _BadBody):
    return _fail(400, str(exc))


@bp.errorhandler(ValidationError)
def _invalid(exc: ValidationError):
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]} for e in exc.errors()
    ]
    return _fail(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)


@bp.errorhandler(SpecError)
def _unknown_names(exc: SpecError):
    return _fail(422, str(exc), [p.model_dump() for p in exc.problems])


@bp.errorhandler(templates.TemplateNotFound)
def _not_found(exc: templates.TemplateNotFound):
    return _fail(404, str(exc.args[0]))


@bp.post("/", strict_slashes=False)
def create_template():
    services = app_services()
    template = templates.create(services, TemplateCreate.model_validate(_body()))
    schedule.wake_dispatcher(services)
    config = templates.public(services.secret_box, template)
    return jsonify(success=True, message="同步模板创建成功", config=config), 201


@bp.get("/", strict_slashes=False)
def list_templates():
    services = app_services()
    with services.sessions() as session:
        return jsonify([templates.public(services.secret_box, t) for t in templates.list_all(session)])


@bp.get("/preview")
def preview():
    table_name = request.args.get("table_name", "")
    if not table_name:
        raise SpecError([Problem(field="table_name", message="table_name is required")])
    selected = [
        f.strip() for value in request.args.getlist("selected_fields") for f in value.split(",") if f.strip()
    ]
    return jsonify(templates.preview(app_services(), table_name, selected))


@bp.get("/<template_uuid>")
def show_template(template_uuid: str):
    services = app_services()
    with services.sessions() as session:
        template = templates.get(session, template_uuid)
        config = templates.public(services.secret_box, template, session)
    return jsonify(success=True, config=config, outbox=outbox.counts(services.engine, template.id))


@bp.put("/<template_uuid>")
def update_template(template_uuid: str):
    body = _body()
    # The seed documents the body as `updates`; a bare object of fields is accepted too.
    changes = body["updates"] if isinstance(body.get("updates"), dict) and len(body) == 1 else body
    services = app_services()
    template = templates.update(services, template_uuid, TemplateFields.model_validate(changes))
    config = templates.public(services.secret_box, template)
    return jsonify(success=True, message="同步模板更新成功", config=config)


@bp.delete("/<template_uuid>")
def delete_template(template_uuid: str):
    templates.delete(app_services(), template_uuid)
    return jsonify(success=True, message="同步模板已删除")


@bp.post("/<template_uuid>/manual-sync")
def manual_sync(template_uuid: str):
    """Queue the job; wait up to COZE_MANUAL_SYNC_WAIT_SECONDS (or `?wait=` seconds) for the
    result, then answer with the seed's counts — or 202 with progress so far."""
    services = app_services()
    body = _json_or_none() if request.data else {}
    if not isinstance(body, dict):
        raise _BadBody("the request body must be a JSON object")
    try:
        wait = float(request.args.get("wait", services.settings.coze_manual_wait_seconds))
    except ValueError:
        raise _BadBody("wait must be a number of seconds") from None
    batch_size, filters = body.get("batch_size", 100), body.get("filters")
    sync = schedule.start_manual_sync(services, template_uuid, batch_size, filters)
    return _sync_answer(services, template_uuid, sync.id, wait)


@bp.get("/<template_uuid>/manual-sync/<int:sync_id>")
def manual_sync_status(template_uuid: str, sync_id: int):
    return _sync_answer(app_services(), template_uuid, sync_id, 0.0)


def _sync_answer(services: Services, template_uuid: str, sync_id: int, wait: float):
    with services.sessions() as session:
        template = templates.get(session, template_uuid)
        sync = session.get(CozeManualSync, sync_id)
        if sync is None or sync.template_id != template.id:
            return _fail(404, f"no manual sync {sync_id} for template {template_uuid}")
    deadline = time.monotonic() + max(0.0, min(wait, 600.0))
    while True:
        state = manual.progress(services, sync_id)
        if state["status"] in ("done", "failed") or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    done = state["status"] == "done"
    body = {
        "success": state["status"] != "failed",
        "message": manual.progress_message(state),
        "sync_id": sync_id,
        "status": state["status"],
        "records_synced": state["records_synced"],
        "records_failed": state["records_failed"],
        "total_records": state["total_records"],
        "status_url": f"/api/v1/coze-sync-templates/{template_uuid}/manual-sync/{sync_id}",
    }
    return jsonify(body), (200 if done or state["status"] == "failed" else 202)


@bp.post("/<template_uuid>/redrive")
def redrive(template_uuid: str):
    services = app_services()
    with services.sessions() as session:
        template = templates.get(session, template_uuid)
    count = outbox.redrive(services.engine, template.id)
    schedule.wake_dispatcher(services)
    return jsonify(success=True, message=f"已重新投递 {count} 条死信", redriven=count)
