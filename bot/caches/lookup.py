"""Reading a cached table: find it by source and table name (or id), filter its records with
`FIELD=VALUE` conditions. The one path the CLI (`cache query`), the REST API and chat (`/cache`)
all read through, so they agree on names, filters and errors: SourceError for a table that
does not exist, QueryError for a filter on a field it does not have."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from bot.caches import store
from bot.caches.export import flat_rows, select_rows
from bot.caches.query import parse_where
from bot.models import CacheField, CacheSource, CacheTable


@dataclass(frozen=True)
class TableRows:
    source: CacheSource
    table: CacheTable
    fields: list[CacheField]
    rows: list[dict[str, Any]]  # {record_id, fields}, values in Feishu's shapes

    @property
    def types(self) -> dict[str, int]:
        return {f.name: f.type for f in self.fields}

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.fields]

    def flat(self) -> list[dict[str, str]]:
        """One plain-text column per field (spreadsheets, chat)."""
        return flat_rows(self.rows, self.columns, self.types)


def query_table(
    engine: Engine, source: str, table: str, where: Iterable[str] = (), *, limit: int | None = None,
    offset: int = 0,
) -> TableRows:
    found_source, found_table = store.find_table(engine, source, table)
    fields = store.table_fields(engine, found_source.id, found_table.table_id)
    types = {f.name: f.type for f in fields}
    conditions = parse_where(where, list(types))
    records = store.iter_records(engine, found_source.id, found_table.table_id)
    rows = select_rows(records, types, conditions, limit=limit, offset=offset)
    return TableRows(found_source, found_table, fields, rows)
