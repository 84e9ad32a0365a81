"""Shared set-up for the Coze sync tests: the seed's demo tables and template specs."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.coze.spec import TemplateCreate
from bot.models import CozeOutbox
from sandbox.coze import COZE_SANDBOX_KEY

CUSTOMER_FIELDS = [
    "uuid",
    "customer_name",
    "customer_code",
    "phone",
    "email",
    "balance",
    "is_active",
    "updated_at",
]


def customer_spec(base_url: str, **overrides) -> TemplateCreate:
    values = {
        "table_name": "customers",
        "config_title": "客户数据同步",
        "coze_workflow_id": "customer_sync_workflow",
        "coze_api_url": base_url,
        "coze_api_key": COZE_SANDBOX_KEY,
        "selected_fields": CUSTOMER_FIELDS,
        "sync_on_insert": True,
        "sync_on_update": True,
        "sync_on_delete": True,
    }
    values.update(overrides)
    return TemplateCreate.model_validate(values)


def outbox_rows(services) -> list[dict]:
    with services.sessions() as session:
        rows = session.scalars(select(CozeOutbox).order_by(CozeOutbox.id)).all()
    return [
        {
            "op": r.op,
            "row_key": r.row_key,
            "old": json.loads(r.old_values) if r.old_values else None,
            "new": json.loads(r.new_values) if r.new_values else None,
            "status": r.status,
            "template_id": r.template_id,
        }
        for r in rows
    ]
