"""Spreadsheets: the sheet list (v3) and cell values by range (v2, `valueRange`)."""

from __future__ import annotations

import re

from flask import Blueprint
from openpyxl.utils import column_index_from_string, get_column_letter

from sandbox import envelope
from sandbox.guard import open_api, state

bp = Blueprint("sandbox_sheets", __name__)

MAX_ROWS_PER_READ = 5000  # assumption: Feishu caps one values read; the bridge reads in chunks


@bp.get("/open-apis/sheets/v3/spreadsheets/<token>/sheets/query")
@open_api
def query_sheets(token: str):
    sheet = state().spreadsheets.get(token)
    if sheet is None:
        return envelope.fail(envelope.SHEETS_NOT_FOUND, "SpreadSheet Not Found")
    return envelope.ok({"sheets": [
        {"sheet_id": s.sheet_id, "title": s.title, "index": i, "hidden": False, "resource_type": "sheet",
         "grid_properties": {"frozen_row_count": 0, "frozen_column_count": 0,
                             "row_count": len(s.values), "column_count": s.column_count}}
        for i, s in enumerate(sheet.sheets)
    ]})


@bp.get("/open-apis/sheets/v2/spreadsheets/<token>/values/<path:cell_range>")
@open_api
def read_values(token: str, cell_range: str):
    spreadsheet = state().spreadsheets.get(token)
    if spreadsheet is None:
        return envelope.fail(envelope.SHEETS_V2_NOT_FOUND, "SpreadSheetNotFound")
    match = re.fullmatch(r"(\w+)!([A-Z]+)(\d+):([A-Z]+)(\d+)", cell_range)
    if match is None:
        return envelope.fail(envelope.SHEETS_BAD_RANGE, f"validate RangeVal fail: {cell_range!r}")
    sheet = next((s for s in spreadsheet.sheets if s.sheet_id == match.group(1)), None)
    if sheet is None:
        return envelope.fail(envelope.SHEETS_V2_SHEET_NOT_FOUND, f"SheetIdNotFound: {match.group(1)}")
    first_col, first_row = column_index_from_string(match.group(2)), int(match.group(3))
    last_col, last_row = column_index_from_string(match.group(4)), int(match.group(5))
    if last_row - first_row + 1 > MAX_ROWS_PER_READ:
        return envelope.fail(envelope.SHEETS_BAD_RANGE, f"at most {MAX_ROWS_PER_READ} rows per read")
    rows = [
        [(row[c - 1] if c - 1 < len(row) else None) for c in range(first_col, last_col + 1)]
        for row in sheet.values[first_row - 1:last_row]
    ]
    first, last = get_column_letter(first_col), get_column_letter(last_col)
    shown = f"{sheet.sheet_id}!{first}{first_row}:{last}{last_row}"
    return envelope.ok({"revision": 1, "spreadsheetToken": token, "valueRange": {
        "majorDimension": "ROWS", "range": shown, "revision": 1, "values": rows}})
