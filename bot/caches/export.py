"""Turning query results into rows and files (JSON, CSV, XLSX)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bot.caches.query import Condition, cell_text, matches


def select_rows(records: Iterable[tuple[str, dict[str, Any]]], types: dict[str, int],
                conditions: Sequence[Condition], limit: int | None = None, offset: int = 0
                ) -> list[dict[str, Any]]:
    """Matching records as {record_id, fields} with Feishu's value shapes."""
    out: list[dict[str, Any]] = []
    skipped = 0
    for record_id, fields in records:
        if not matches(fields, types, conditions):
            continue
        if skipped < offset:
            skipped += 1
            continue
        out.append({"record_id": record_id, "fields": fields})
        if limit is not None and len(out) >= limit:
            break
    return out


def flat_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], types: dict[str, int]) -> list[dict]:
    """One plain-text column per field, for spreadsheets."""
    return [{"record_id": r["record_id"], **{c: cell_text(r["fields"].get(c), types.get(c)) for c in columns}}
            for r in rows]


def write_table(rows: Sequence[dict], columns: Sequence[str], path: Path, fmt: str) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["record_id", *columns])
    if fmt == "csv":
        frame.to_csv(path, index=False, encoding="utf-8-sig")  # BOM: Excel opens Chinese correctly
    else:
        frame.to_excel(path, index=False, engine="openpyxl")
