"""Turning query results into rows and files (JSON, CSV, XLSX)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bot.caches.query import Condition, cell_text, matches
from bot.cells import csv_row, xlsx_row
from bot.private import private_file


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
    """Write rows as CSV or XLSX; cells that look like formulas stay text (bot/cells.py)."""
    header = ["record_id", *columns]
    if fmt == "csv":
        # the BOM makes Excel read the Chinese text as UTF-8
        with private_file(path).open("w", newline="", encoding="utf-8-sig") as handle:
            writer = csv.writer(handle)
            writer.writerow(csv_row(header))
            writer.writerows(csv_row(row.get(c) for c in header) for row in rows)
        return
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Sheet1")
    sheet.append(xlsx_row(sheet, header))
    for row in rows:
        sheet.append(xlsx_row(sheet, [row.get(c) for c in header]))
    book.save(private_file(path))
