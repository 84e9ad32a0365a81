"""Pipeline definitions in the database: add, list, get, enable, remove — what `pipeline
add|list|show|remove` and the chat command call. Runs outlive a removed pipeline (they name it).

An SQL source's URL may carry a password: the `spec` column keeps the URL masked and the real
one sealed beside it (`url_sealed`, the tokens' Fernet box), so the database and its backups do
not hold it in clear. Only a run asks for it back (`get(..., box=)`); whatever shows a spec gets
the masked URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import callables
from bot.masking import mask_url, register_secrets
from bot.models import Pipeline, utcnow
from bot.pipelines.spec import PipelineSpec, check, parse

if TYPE_CHECKING:
    from bot.services import Services
    from bot.tokens.secretbox import SecretBox

SEALED_URL = "url_sealed"  # beside source.url in the stored JSON: the real URL, sealed
ADD_LOCK_ID = 0x46425f50  # "FB_P": the advisory lock that serialises `add` on PostgreSQL


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


def _info(row: Pipeline, box: SecretBox | None = None) -> PipelineInfo:
    return PipelineInfo(row.name, _loaded(row.spec, box), row.enabled, row.created_at,
                        row.updated_at, row.last_scheduled_at, row.covered_through, row.last_run_id,
                        row.last_run_state, row.last_run_at)


class MaskedPassword(ValueError):
    """A URL whose password is the mask `pipeline show` prints, not a password."""


def _url_secrets(url: str) -> None:
    """The URL's passwords (user:password@ and ?password=) are scrubbed from logs from now on
    (a failing connection may echo them)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    register_secrets([parsed.password, *(v for k, v in parsed.query.items() if k.lower() == "password")])


def _stored(spec: PipelineSpec, services: Services, before: str | None) -> str:
    """The `spec` column's JSON: an SQL source's URL with a secret in it kept masked, the real
    one sealed under SEALED_URL (the box is built only then: most pipelines need none). A
    replacement that gives the stored URL back as shown (masked) keeps the sealed one; any other
    masked password is refused (it would be stored as the password "***")."""
    doc = spec.model_dump(mode="json")
    url = doc["source"].get("url")
    if not url:
        return json.dumps(doc, ensure_ascii=False)
    previous = json.loads(before)["source"] if before else {}
    if previous.get(SEALED_URL) and url == previous.get("url"):
        doc["source"][SEALED_URL] = previous[SEALED_URL]
    elif (shown := mask_url(url)) != url:
        _url_secrets(url)
        doc["source"].update({"url": shown, SEALED_URL: services.secret_box.seal(url)})
    elif "***" in url:
        raise MaskedPassword("source.url has the masked password *** that `pipeline show` prints: give the "
                             "real password (it is stored sealed)")
    return json.dumps(doc, ensure_ascii=False)


def _loaded(stored: str, box: SecretBox | None) -> PipelineSpec:
    """The spec from its column: with `box` (a run) the source URL is the real one, without it
    (anything that shows a spec) masked. A row stored before sealing holds the URL in clear:
    used as it is by a run, masked for showing."""
    doc = json.loads(stored)
    source = doc.get("source") or {}
    sealed = source.pop(SEALED_URL, None)
    if source.get("url"):
        if box is None:
            source["url"] = mask_url(source["url"])
        else:
            if sealed:
                source["url"] = _unsealed(box, sealed, doc.get("name"))
            _url_secrets(source["url"])
    return PipelineSpec.model_validate(doc)


def _unsealed(box: SecretBox, sealed: str, name: str | None) -> str:
    from bot.pipelines.sources import SourceError
    from bot.tokens.secretbox import SecretBoxError

    try:
        return box.open(sealed)
    except SecretBoxError as exc:  # a changed key: no retry opens it
        raise SourceError(f"pipeline {name}: its SQL source's url cannot be unsealed ({exc}); add the "
                          "pipeline again with `pipeline add --replace`") from exc


def add(services: Services, spec: PipelineSpec | dict[str, Any] | str, *, replace: bool = False,
        enabled: bool | None = None) -> PipelineInfo:
    """Validate (SpecError naming every problem) and store a definition; `replace` overwrites
    one of the same name (keeping its schedule state and, unless `enabled` is given, whether it
    is enabled), else PipelineExists."""
    spec = spec if isinstance(spec, PipelineSpec) else parse(spec)
    check(spec, callables.prefixes(services.settings.pipeline_modules))
    now = utcnow()
    with Session(services.engine) as session, session.begin():
        _serialise_adds(session)
        row = session.scalar(select(Pipeline).where(Pipeline.name == spec.name))
        if row is not None and not replace:
            raise PipelineExists(f"a pipeline named {spec.name!r} exists (replace it, or remove it first)")
        _check_table_free(session, spec)
        if row is None:
            row = Pipeline(name=spec.name, created_at=now, enabled=True)
            session.add(row)
        if enabled is not None:
            row.enabled = enabled
        row.spec, row.updated_at = _stored(spec, services, row.spec), now
        try:
            session.flush()
        except IntegrityError as exc:  # added concurrently under the same name
            raise PipelineExists(f"a pipeline named {spec.name!r} exists") from exc
        return _info(row)


def _serialise_adds(session: Session) -> None:
    """Take the database's write lock before reading, so two adds at once cannot both find a
    table free: PostgreSQL's transaction advisory lock; SQLite's write lock, which a write
    statement (one matching no row) takes and holds to the commit."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SELECT pg_advisory_xact_lock({ADD_LOCK_ID})"))
    else:
        session.execute(update(Pipeline).where(text("1 = 0")).values(enabled=Pipeline.enabled))


def _check_table_free(session: Session, spec: PipelineSpec) -> None:
    """TableTaken unless every pipeline already on spec's table and spec itself only upserts
    with the same key and partition (a record is then one key for all of them; with different
    keys one pipeline's update or duplicate removal would undo another's rows)."""
    for other in session.scalars(select(Pipeline).where(Pipeline.name != spec.name)):
        theirs = _loaded(other.spec, None)
        same = (theirs.target.app_token, theirs.target.table_id) == (spec.target.app_token,
                                                                      spec.target.table_id)
        if not same:
            continue
        where = f"{spec.target.app_token}/{spec.target.table_id}"
        if theirs.delete_missing or spec.delete_missing:
            raise TableTaken(
                f"pipeline {other.name!r} already writes table {where}; "
                "two pipelines that delete missing rows on one table would delete each other's rows. "
                "Use another table, or set \"delete_missing\": false on both (upsert only)")
        if (theirs.key, theirs.partition) != (spec.key, spec.partition):
            raise TableTaken(
                f"pipeline {other.name!r} already writes table {where} with key {theirs.key} and "
                f"partition {theirs.partition}: pipelines sharing a table need the same key and partition")


def get(engine: Engine, name: str, *, box: SecretBox | None = None) -> PipelineInfo:
    """A pipeline; `box` (only to run it) unseals its SQL source's URL, else its password is masked."""
    with Session(engine) as session:
        row = session.scalar(select(Pipeline).where(Pipeline.name == name))
        if row is None:
            raise PipelineNotFound(f"no pipeline named {name!r}")
        return _info(row, box)


def list_all(engine: Engine) -> list[PipelineInfo]:
    """Every pipeline, by name, for showing and scheduling: SQL source URLs masked."""
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
