"""A template as the API takes it, and its validation against the live schema (pure: the
table's description is passed in)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot import callables
from bot.coze.schema_info import IDENTIFIER, RESERVED_PREFIXES, TableInfo

UNSENDABLE_KINDS = {"bytes"}


class Problem(BaseModel):
    field: str  # which input was wrong: table_name, selected_fields, filters, field_mapping …
    message: str


class SpecError(ValueError):
    """Input that names something the database does not have (answered with 422)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


class FieldMapping(BaseModel):
    """Optional renames, a custom callable (`package.module:function` or dotted), and a
    parameter that carries the operation (insert/update/delete/sync) if the workflow wants it."""

    model_config = ConfigDict(extra="forbid")

    rename: dict[str, str] = Field(default_factory=dict)
    callable: str | None = None
    operation_field: str | None = None


class TemplateFields(BaseModel):
    """What create and update share; every field optional so PUT can send only changes."""

    model_config = ConfigDict(extra="forbid")

    config_title: str | None = Field(default=None, min_length=1, max_length=200)
    table_name: str | None = Field(default=None, min_length=1, max_length=128)
    coze_workflow_id: str | None = Field(default=None, min_length=1, max_length=128)
    coze_api_url: str | None = Field(default=None, max_length=500)
    coze_api_key: str | None = None
    selected_fields: list[str] | None = None
    sync_on_insert: bool | None = None
    sync_on_update: bool | None = None
    sync_on_delete: bool | None = None
    field_mapping: FieldMapping | None = None
    enabled: bool | None = None
    created_by: str | None = Field(default=None, max_length=64)

    @field_validator("coze_api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("coze_api_url must start with http:// or https://")
        return value.rstrip("/") if value else value


class TemplateCreate(TemplateFields):
    config_title: str = Field(min_length=1, max_length=200)
    table_name: str = Field(min_length=1, max_length=128)
    coze_workflow_id: str = Field(min_length=1, max_length=128)


def check_table(name: str, table: TableInfo | None) -> list[Problem]:
    if not IDENTIFIER.match(name) or table is None:
        return [Problem(field="table_name", message=f"table {name!r} does not exist")]
    if name.startswith(RESERVED_PREFIXES):
        return [Problem(field="table_name", message=f"table {name!r} belongs to the sync machinery itself")]
    if not table.primary_key:
        return [
            Problem(
                field="table_name",
                message=f"table {name!r} has no primary key (needed to keep each row's changes in order)",
            )
        ]
    return []


def check_fields(names: list[str], table: TableInfo, field: str = "selected_fields") -> list[Problem]:
    problems = []
    if len(set(names)) != len(names):
        problems.append(Problem(field=field, message="selected_fields lists a field twice"))
    for name in names:
        if not isinstance(name, str) or name not in table.columns:
            problems.append(
                Problem(field=field, message=f"field {name!r} does not exist in table {table.name!r}")
            )
        elif table.columns[name] in UNSENDABLE_KINDS:
            problems.append(
                Problem(field=field, message=f"field {name!r} is binary and cannot be sent to Coze")
            )
    return problems


def check_mapping(mapping: FieldMapping | None, selected: list[str], prefixes: list[str]) -> list[Problem]:
    if mapping is None:
        return []
    problems = []
    for source in mapping.rename:
        if source not in selected:
            problems.append(
                Problem(
                    field="field_mapping", message=f"rename names {source!r}, which is not a selected field"
                )
            )
    if mapping.callable:
        why = callables.problem(mapping.callable, prefixes, "COZE_MAPPING_MODULES")
        if why:
            problems.append(Problem(field="field_mapping", message=why))
    return problems


def effective_fields(selected: list[str] | None, table: TableInfo) -> list[str]:
    """No selection means every sendable column."""
    if selected:
        return list(selected)
    return [c for c, kind in table.columns.items() if kind not in UNSENDABLE_KINDS]


def validate(
    spec: TemplateFields,
    table_name: str,
    table: TableInfo | None,
    prefixes: list[str],
    current_fields: list[str] | None = None,
) -> list[str]:
    """Raise SpecError naming every unknown table or field; return the fields to sync."""
    problems = check_table(table_name, table)
    if problems:
        raise SpecError(problems)
    assert table is not None
    fields = effective_fields(
        spec.selected_fields if spec.selected_fields is not None else current_fields, table
    )
    problems = check_fields(fields, table)
    problems += check_mapping(spec.field_mapping, fields, prefixes)
    if problems:
        raise SpecError(problems)
    return fields
