"""`/openapi.json`: the REST API described for tools (schemas come from the pydantic models
that validate the requests, so the document cannot drift from what is enforced)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from pydantic import BaseModel, Field

from bot.coze.spec import TemplateCreate, TemplateFields

bp = Blueprint("openapi", __name__)


class ManualSyncRequest(BaseModel):
    batch_size: int = Field(default=100, ge=1, le=5000)
    filters: dict[str, Any] | list[list[Any]] | None = Field(
        default=None,
        description='{"column": value} or [[column, operator, value], …]; '
        "operators: =, !=, <, <=, >, >=, in, not in, like, is null, is not null",
    )


class TemplateAnswer(BaseModel):
    success: bool
    message: str
    config: dict[str, Any]


class ManualSyncAnswer(BaseModel):
    success: bool
    message: str
    records_synced: int
    total_records: int
    records_failed: int = 0
    sync_id: int
    status: str
    status_url: str


class ErrorAnswer(BaseModel):
    success: bool = False
    message: str
    errors: list[dict[str, str]] | None = None


SCHEMAS = {
    m.__name__: m
    for m in (
        TemplateCreate,
        TemplateFields,
        ManualSyncRequest,
        TemplateAnswer,
        ManualSyncAnswer,
        ErrorAnswer,
    )
}
BASE = "/api/v1/coze-sync-templates"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str = "") -> dict[str, Any]:
    return {"description": description or name, "content": {"application/json": {"schema": _ref(name)}}}


ERRORS = {
    "401": _json("ErrorAnswer", "missing or wrong admin token"),
    "422": _json("ErrorAnswer", "unknown table or field, or invalid input (named in errors)"),
}
UUID_PARAM = {"name": "config_uuid", "in": "path", "required": True, "schema": {"type": "string"}}


def document() -> dict[str, Any]:
    components = {}
    for name, model in SCHEMAS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[name] = schema
    item = f"{BASE}/{{config_uuid}}"
    return {
        "openapi": "3.1.0",
        "info": {"title": "Feishu Bridge API", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"admin": []}],
        "paths": {
            f"{BASE}/": {
                "post": {
                    "summary": "Create a sync template (installs its triggers)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("TemplateCreate")}},
                    },
                    "responses": {"201": _json("TemplateAnswer"), **ERRORS},
                },
                "get": {
                    "summary": "List sync templates",
                    "responses": {"200": {"description": "templates (keys masked)"}, **ERRORS},
                },
            },
            f"{BASE}/preview": {
                "get": {
                    "summary": "Fields of a table with types, and sample rows as Coze would get them",
                    "parameters": [
                        {"name": "table_name", "in": "query", "required": True, "schema": {"type": "string"}},
                        {
                            "name": "selected_fields",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "comma-separated",
                        },
                    ],
                    "responses": {"200": {"description": "preview"}, **ERRORS},
                },
            },
            item: {
                "parameters": [UUID_PARAM],
                "get": {
                    "summary": "One template, its triggers and outbox counts",
                    "responses": {"200": {"description": "template"}, "404": _json("ErrorAnswer"), **ERRORS},
                },
                "put": {
                    "summary": "Update a template (replaces its triggers)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("TemplateFields")}},
                    },
                    "responses": {"200": _json("TemplateAnswer"), "404": _json("ErrorAnswer"), **ERRORS},
                },
                "delete": {
                    "summary": "Delete a template (drops its triggers)",
                    "responses": {"200": {"description": "deleted"}, "404": _json("ErrorAnswer"), **ERRORS},
                },
            },
            f"{item}/manual-sync": {
                "parameters": [
                    UUID_PARAM,
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "number"},
                        "description": "seconds to wait for the result (default COZE_MANUAL_WAIT_SECONDS)",
                    },
                ],
                "post": {
                    "summary": "Send every matching row, in batches, through the outbox",
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("ManualSyncRequest")}},
                    },
                    "responses": {
                        "200": _json("ManualSyncAnswer", "finished"),
                        "202": _json("ManualSyncAnswer", "still running: poll status_url"),
                        "404": _json("ErrorAnswer"),
                        **ERRORS,
                    },
                },
            },
            f"{item}/manual-sync/{{sync_id}}": {
                "parameters": [
                    UUID_PARAM,
                    {"name": "sync_id", "in": "path", "required": True, "schema": {"type": "integer"}},
                ],
                "get": {
                    "summary": "Progress of a manual sync",
                    "responses": {
                        "200": _json("ManualSyncAnswer"),
                        "202": _json("ManualSyncAnswer"),
                        "404": _json("ErrorAnswer"),
                    },
                },
            },
            f"{item}/redrive": {
                "parameters": [UUID_PARAM],
                "post": {
                    "summary": "Send the template's dead letters again",
                    "responses": {"200": {"description": "count re-queued"}, "404": _json("ErrorAnswer")},
                },
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
