"""Pipeline definitions in the database: add, list, get, enable, remove — what `pipeline
add|list|show|remove` and the chat command call. Runs outlive a removed pipeline (they name it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import callables
from bot.models import Pipeline, utcnow
from bot.pipelines.spec import PipelineSpec, check, parse

if TYPE_CHECKING:
    from bot.services import Services


class PipelineNotFound(LookupError):
    pass


class PipelineExists(ValueError):
    pass


class TableTaken(ValueError):
    """Another pipeline writes the target table and one of the two deletes rows: each would
    delete the other's rows as "no longer in the source"."""


@dataclass(frozen=True)
class PipelineInfo:
    name: str
    spec: PipelineSpec
    enabled: bool
    created_at: datetime
    updated_at: datetime
    last_scheduled_at: datetime | None
    covered_through: date | None
    last_run_id: int | None
    last_run_state: str | None
    last_run_at: datetime | None


def _info(row: Pipeline) -> PipelineInfo:
    return PipelineInfo(row.name, PipelineSpec.model_validate_json(row.spec), row.enabled, row.created_at,
                        row.updated_at, row.last_scheduled_at, row.covered_through, row.last_run_id,
                        row.last_run_state, row.last_run_at)


def add(services: Services, spec: PipelineSpec | dict[str, Any] | str, *, replace: bool = False,
        enabled: bool | None = None) -> PipelineInfo:
    """Validate (SpecError naming every problem) and store a definition; `replace` overwrites
    one of the same name (keeping its schedule state and, unless `enabled` is given, whether it
    is enabled), else PipelineExists."""
    spec = spec if isinstance(spec, PipelineSpec) else parse(spec)
    check(spec, callables.prefixes(services.settings.pipeline_modules))
    now = utcnow()
    with Session(services.engine) as session, session.begin():
        row = session.scalar(select(Pipeline).where(Pipeline.name == spec.name))
        if row is not None and not replace:
            raise PipelineExists(f"a pipeline named {spec.name!r} exists (replace it, or remove it first)")
        _check_table_free(session, spec)
        if row is None:
            row = Pipeline(name=spec.name, created_at=now, enabled=True)
            session.add(row)
        if enabled is not None:
            row.enabled = enabled
        row.spec, row.updated_at = spec.model_dump_json(), now
        try:
            session.flush()
        except IntegrityError as exc:  # added concurrently under the same name
            raise PipelineExists(f"a pipeline named {spec.name!r} exists") from exc
        return _info(row)


def _check_table_free(session: Session, spec: PipelineSpec) -> None:
    """TableTaken if another pipeline writes spec's table and either deletes missing rows."""
    for other in session.scalars(select(Pipeline).where(Pipeline.name != spec.name)):
        theirs = PipelineSpec.model_validate_json(other.spec)
        same = (theirs.target.app_token, theirs.target.table_id) == (spec.target.app_token,
                                                                      spec.target.table_id)
        if same and (theirs.delete_missing or spec.delete_missing):
            where = f"{spec.target.app_token}/{spec.target.table_id}"
            raise TableTaken(
                f"pipeline {other.name!r} already writes table {where}; "
                "two pipelines that delete missing rows on one table would delete each other's rows. "
                "Use another table, or set \"delete_missing\": false on both (upsert only)")


def get(engine: Engine, name: str) -> PipelineInfo:
    with Session(engine) as session:
        row = session.scalar(select(Pipeline).where(Pipeline.name == name))
        if row is None:
            raise PipelineNotFound(f"no pipeline named {name!r}")
        return _info(row)


def list_all(engine: Engine) -> list[PipelineInfo]:
    with Session(engine) as session:
        return [_info(row) for row in session.scalars(select(Pipeline).order_by(Pipeline.name))]


def set_enabled(engine: Engine, name: str, enabled: bool) -> None:
    with engine.begin() as conn:
        done = conn.execute(update(Pipeline).where(Pipeline.name == name)
                            .values(enabled=enabled, updated_at=utcnow())).rowcount
    if not done:
        raise PipelineNotFound(f"no pipeline named {name!r}")


def remove(engine: Engine, name: str) -> None:
    """Delete the definition; its runs stay (a queued one then fails: its pipeline is gone)."""
    with engine.begin() as conn:
        done = conn.execute(delete(Pipeline).where(Pipeline.name == name)).rowcount
    if not done:
        raise PipelineNotFound(f"no pipeline named {name!r}")


def mark_scheduled(engine: Engine, name: str, slot: datetime) -> None:
    """The schedule slot a run was just started for: the next is computed from it."""
    with engine.begin() as conn:
        conn.execute(update(Pipeline).where(Pipeline.name == name).values(last_scheduled_at=slot))


def mark_run(engine: Engine, name: str, run_id: int, state: str, *, covered: date | None = None) -> None:
    """A run's outcome on its pipeline; `covered`: the last day it wrote (never moves back)."""
    values: dict[str, Any] = {"last_run_id": run_id, "last_run_state": state, "last_run_at": utcnow()}
    with engine.begin() as conn:
        conn.execute(update(Pipeline).where(Pipeline.name == name).values(**values))
        if covered is not None:
            conn.execute(update(Pipeline).where(Pipeline.name == name)
                         .where((Pipeline.covered_through.is_(None)) | (Pipeline.covered_through < covered))
                         .values(covered_through=covered))
