"""Calling a pipeline's source for one day: a Python callable from PIPELINE_MODULES, or one
SQL SELECT run read-only.

Read-only is enforced by the database, not by parsing: SQLite's `PRAGMA query_only` on the
connection for the query's duration (reset before the pooled connection goes back: the bridge
writes through the same pool), `SET TRANSACTION READ ONLY` on PostgreSQL and MySQL. The spec
already refuses anything but one SELECT; this is the second lock on the door.

An SQL error that is the definition's fault (a missing table or column, bad syntax, a bind the
query lacks, a URL or driver that cannot be used) is a SourceError: retrying would fail the same
way. A database that cannot be reached, or drops the connection, stays transient (retried).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InternalError,
    OperationalError,
    ProgrammingError,
    StatementError,
)
from sqlalchemy.pool import NullPool

from bot import callables
from bot.masking import mask_url
from bot.pipelines.context import FetchContext, FetchResult
from bot.pipelines.spec import PipelineSpec, PythonSource, SqlSource

if TYPE_CHECKING:
    from bot.services import Services

READ_ONLY_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb")
READ_ONLY_SQLSTATE = "25006"  # PostgreSQL: read_only_sql_transaction


class SourceError(RuntimeError):
    """The source gave something that is not rows, or cannot be run at all (a permanent
    failure: retrying the same run would give the same)."""


def fetch(services: Services, spec: PipelineSpec, ctx: FetchContext) -> FetchResult:
    """One day's rows (the whole source, once, for an unpartitioned pipeline)."""
    if isinstance(spec.source, PythonSource):
        return _python(spec.source, callables.prefixes(services.settings.pipeline_modules), ctx)
    return _sql(services.engine, spec.source, ctx.day, spec.name)


def _python(source: PythonSource, modules: list[str], ctx: FetchContext) -> FetchResult:
    # checked again at run time: PIPELINE_MODULES may have changed since the pipeline was added
    if not callables.is_allowed(source.callable, modules):
        raise SourceError(f"callable {source.callable!r} is outside PIPELINE_MODULES")
    try:
        function = callables.load(source.callable)
    except (ImportError, AttributeError, TypeError) as exc:
        raise SourceError(f"callable {source.callable!r} cannot be loaded: {exc}") from exc
    return as_result(function(ctx), source.callable)


def as_result(value: Any, where: str) -> FetchResult:
    """A source's return value as a FetchResult: a FetchResult, or an iterable of mappings."""
    if isinstance(value, FetchResult):
        result = value
    elif isinstance(value, Mapping | str | bytes) or not isinstance(value, Iterable):
        raise SourceError(f"{where} returned a {type(value).__name__}: a source returns a list of rows "
                          "(dicts keyed by field name) or a FetchResult")
    else:
        result = FetchResult(list(value))
    for number, row in enumerate(result.rows, 1):
        if not isinstance(row, Mapping):
            raise SourceError(f"{where}: row {number} is a {type(row).__name__}, not a dict of field values")
    return FetchResult([dict(r) for r in result.rows], [str(g) for g in result.expected_groups],
                       {str(g): str(why) for g, why in result.failed_groups.items()})


def _sql(bridge: Engine, source: SqlSource, day: date | None, pipeline: str) -> FetchResult:
    try:
        if source.url is None:
            return FetchResult(run_query(bridge, source.query, day))
        engine = create_engine(source.url, poolclass=NullPool)
        try:
            return FetchResult(run_query(engine, source.query, day))
        finally:
            engine.dispose()
    except (ArgumentError, ImportError, StatementError) as exc:
        why = _definition_fault(exc)
        if why is None:
            raise
        if source.url:  # an error may quote the URL: never its password
            why = why.replace(source.url, mask_url(source.url))
        raise SourceError(f"pipeline {pipeline}: {why}") from exc


def _definition_fault(exc: Exception) -> str | None:
    """Why the SQL source cannot work as defined (one line), or None when the error may pass
    (the database down or the connection lost: the run is retried)."""
    if isinstance(exc, ArgumentError):  # NoSuchModuleError too: a dialect SQLAlchemy lacks
        return f"its SQL source's url cannot be used: {_first_line(exc)}"
    if isinstance(exc, ImportError):
        return f"its SQL source's database driver is not installed: {_first_line(exc)}"
    if not isinstance(exc, StatementError):
        return None
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return None
        message = _first_line(exc.orig)
        if isinstance(exc, OperationalError):
            # what an unreachable database raises; SQLite says "no such table" and syntax errors so too
            sqlite = isinstance(exc.orig, sqlite3.OperationalError)
            if sqlite and "readonly database" in message:  # PRAGMA query_only refused a write
                return f"its SQL query writes, and SQL sources are read-only: {message}"
            sqlite_query = sqlite and (message.startswith("no such") or "syntax error" in message)
            return f"its SQL query cannot run: {message}" if sqlite_query else None
        if isinstance(exc, InternalError) and _sqlstate(exc.orig) == READ_ONLY_SQLSTATE:
            return f"its SQL query writes, and SQL sources are read-only: {message}"
        return f"its SQL query cannot run: {message}" if isinstance(exc, ProgrammingError) else None
    return f"its SQL query cannot run: {_first_line(exc.orig or exc)}"  # a bind it lacks


def _sqlstate(error: BaseException | None) -> str | None:
    """PostgreSQL's SQLSTATE of a driver error (psycopg 3: sqlstate; psycopg2: pgcode)."""
    return getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def run_query(engine: Engine, query: str, day: date | None = None) -> list[dict[str, Any]]:
    """The query's rows as dicts by column name, read-only; `:day` bound when the query has it."""
    dialect = engine.dialect.name
    if dialect not in READ_ONLY_DIALECTS:
        raise SourceError(f"SQL sources run on {', '.join(READ_ONLY_DIALECTS)} (read-only there), "
                          f"not {dialect}")
    statement = text(query)
    params = {"day": day} if day is not None and "day" in statement._bindparams else {}
    with engine.connect() as conn:
        if dialect == "sqlite":
            return _sqlite_read_only(conn, statement, params)
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        try:
            return [dict(row._mapping) for row in conn.execute(statement, params)]
        finally:
            conn.rollback()


def _sqlite_read_only(conn: Connection, statement: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    conn.exec_driver_sql("PRAGMA query_only = ON")
    try:
        return [dict(row._mapping) for row in conn.execute(statement, params)]
    finally:
        conn.rollback()
        try:
            conn.exec_driver_sql("PRAGMA query_only = OFF")
            conn.commit()
        except Exception:  # never hand a read-only connection back to the pool
            conn.invalidate()
            raise
