"""Creating, changing and deleting templates — each in one transaction with its triggers, so a
template and the triggers that feed it never disagree."""

from __future__ import annotations

import json
import uuid as uuid_module
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import callables
from bot.coze import schema_info
from bot.coze.keys import masked_key, seal_key
from bot.coze.spec import FieldMapping, TemplateCreate, TemplateFields, validate
from bot.coze.triggers import TriggerPlan, installed_triggers, replace_triggers
from bot.models import CozeTemplate

if TYPE_CHECKING:
    from bot.services import Services
    from bot.tokens.secretbox import SecretBox


class TemplateNotFound(LookupError):
    pass


def _prefixes(services: Services) -> list[str]:
    return callables.prefixes(services.settings.coze_mapping_modules)


def plan_for(template: CozeTemplate) -> TriggerPlan:
    operations = tuple(
        op
        for op, on in (
            ("insert", template.sync_on_insert),
            ("update", template.sync_on_update),
            ("delete", template.sync_on_delete),
        )
        if on and template.enabled
    )
    return TriggerPlan(
        template.id,
        template.table_name,
        tuple(json.loads(template.key_fields)),
        tuple(json.loads(template.selected_fields)),
        operations,
    )


def public(box: SecretBox, template: CozeTemplate, session: Session | None = None) -> dict[str, Any]:
    """The seed's shape plus what an operator needs; the key only masked (`box` opens it)."""
    document = {
        "uuid": template.uuid,
        "config_title": template.config_title,
        "table_name": template.table_name,
        "coze_workflow_id": template.coze_workflow_id,
        "coze_api_url": template.coze_api_url,
        "coze_api_key": masked_key(box, template.coze_api_key),
        "selected_fields": json.loads(template.selected_fields),
        "sync_on_insert": template.sync_on_insert,
        "sync_on_update": template.sync_on_update,
        "sync_on_delete": template.sync_on_delete,
        "field_mapping": json.loads(template.field_mapping) if template.field_mapping else None,
        "enabled": template.enabled,
        "status": template.status,
        "status_detail": template.status_detail,
        "last_sync_time": _iso(template.last_sync_time),
        "created_by": template.created_by,
        "created_at": _iso(template.created_at),
    }
    if session is not None:
        document["triggers"] = installed_triggers(session.connection(), template.id)
    return document


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get(session: Session, template_uuid: str) -> CozeTemplate:
    template = session.scalar(select(CozeTemplate).where(CozeTemplate.uuid == template_uuid))
    if template is None:
        raise TemplateNotFound(f"no sync template {template_uuid!r}")
    return template


def list_all(session: Session) -> list[CozeTemplate]:
    return list(session.scalars(select(CozeTemplate).order_by(CozeTemplate.id)))


def create(services: Services, spec: TemplateCreate) -> CozeTemplate:
    table = schema_info.describe(services.engine, spec.table_name)
    fields = validate(spec, spec.table_name, table, _prefixes(services))
    assert table is not None
    now = datetime.now(UTC)
    template = CozeTemplate(
        uuid=str(uuid_module.uuid4()),
        config_title=spec.config_title,
        table_name=spec.table_name,
        coze_workflow_id=spec.coze_workflow_id,
        coze_api_url=spec.coze_api_url or services.settings.coze_default_api_url,
        coze_api_key=seal_key(services.secret_box, spec.coze_api_key),
        selected_fields=json.dumps(fields),
        field_kinds=json.dumps({f: table.columns[f] for f in fields}),
        key_fields=json.dumps(list(table.primary_key)),
        sync_on_insert=True if spec.sync_on_insert is None else spec.sync_on_insert,
        sync_on_update=True if spec.sync_on_update is None else spec.sync_on_update,
        sync_on_delete=False if spec.sync_on_delete is None else spec.sync_on_delete,
        field_mapping=spec.field_mapping.model_dump_json() if spec.field_mapping else None,
        enabled=True if spec.enabled is None else spec.enabled,
        status="ACTIVE" if spec.enabled is not False else "DISABLED",
        created_by=spec.created_by,
        created_at=now,
        updated_at=now,
    )
    with services.sessions() as session, session.begin():
        session.add(template)
        session.flush()
        replace_triggers(session.connection(), template.id, None, plan_for(template))
    return template


def update(services: Services, template_uuid: str, spec: TemplateFields) -> CozeTemplate:
    changes = spec.model_dump(exclude_unset=True)
    with services.sessions() as session, session.begin():
        template = get(session, template_uuid)
        old_table = template.table_name
        table_name = changes.get("table_name", template.table_name)
        table = schema_info.describe(services.engine, table_name)
        current = json.loads(template.selected_fields) if "table_name" not in changes else None
        mapping = (
            spec.field_mapping
            if "field_mapping" in changes
            else (
                FieldMapping.model_validate_json(template.field_mapping) if template.field_mapping else None
            )
        )
        check = TemplateFields(selected_fields=changes.get("selected_fields"), field_mapping=mapping)
        fields = validate(check, table_name, table, _prefixes(services), current_fields=current)
        assert table is not None
        for name in (
            "config_title",
            "coze_workflow_id",
            "sync_on_insert",
            "sync_on_update",
            "sync_on_delete",
            "enabled",
            "created_by",
        ):
            if name in changes and changes[name] is not None:
                setattr(template, name, changes[name])
        if changes.get("coze_api_url"):
            template.coze_api_url = changes["coze_api_url"]
        if "coze_api_key" in changes:
            template.coze_api_key = seal_key(services.secret_box, changes["coze_api_key"])
        if "field_mapping" in changes:
            template.field_mapping = spec.field_mapping.model_dump_json() if spec.field_mapping else None
        template.table_name = table_name
        template.selected_fields = json.dumps(fields)
        template.field_kinds = json.dumps({f: table.columns[f] for f in fields})
        template.key_fields = json.dumps(list(table.primary_key))
        if not template.enabled:
            template.status = "DISABLED"
        elif template.status == "DISABLED" or "coze_api_key" in changes or "coze_workflow_id" in changes:
            template.status, template.status_detail = "ACTIVE", None
        template.updated_at = datetime.now(UTC)
        session.flush()
        replace_triggers(session.connection(), template.id, old_table, plan_for(template))
    return template


def delete(services: Services, template_uuid: str) -> None:
    """Drop the triggers and the template; its undelivered outbox rows go with it (the delivery
    log stays)."""
    with services.sessions() as session, session.begin():
        template = get(session, template_uuid)
        replace_triggers(session.connection(), template.id, template.table_name, None)
        session.delete(template)


def preview(
    services: Services, table_name: str, selected: list[str] | None, sample_size: int = 5
) -> dict[str, Any]:
    """Available fields with types and a few rows of the selected ones, mapped as Coze would get
    them."""
    from bot.coze import mapping

    table = schema_info.describe(services.engine, table_name)
    spec = TemplateFields(selected_fields=selected or None)
    fields = validate(spec, table_name, table, _prefixes(services))
    assert table is not None
    reflected = schema_info.reflect(services.engine, table)
    query = select(*(reflected.c[f] for f in fields)).order_by(*(reflected.c[k] for k in table.primary_key))
    with services.engine.connect() as connection:
        rows = connection.execute(query.limit(sample_size)).mappings().all()
    samples = [
        {name: mapping.convert(mapping.plain(value), table.columns[name]) for name, value in row.items()}
        for row in rows
    ]
    return {
        "success": True,
        "table_name": table_name,
        "table_display_name": table_name,
        "available_fields": [
            {"name": n, "type": kind, "db_type": table.types[n]} for n, kind in table.columns.items()
        ],
        "primary_key": list(table.primary_key),
        "selected_fields": fields,
        "sample_data": samples,
        "sample_size": len(samples),
    }
