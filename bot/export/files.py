"""Reading an exported workbook and naming it in the archive.

Reads go through python-calamine (via pandas), several times faster than openpyxl for these
files. Every cell is kept as the workbook holds it; only the creation-time column is parsed,
because matching a file to its window is done on those times.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from bot.export.limits import WorkbookLimits, WorkbookTooLarge, check_workbook


class BadExportFile(ValueError):
    """Not an export workbook we understand (the message says why)."""


@dataclass(frozen=True)
class FileSummary:
    rows: int
    first_created: datetime | None
    last_created: datetime | None
    columns: tuple[str, ...]


def read_export(
    path: Path, *, id_column: str, time_column: str, limits: WorkbookLimits | None = None
) -> pd.DataFrame:
    """The workbook's rows; refused (BadExportFile) before reading when it is over `limits`."""
    try:
        check_workbook(path, limits or WorkbookLimits())
    except WorkbookTooLarge as exc:
        raise BadExportFile(str(exc)) from exc
    try:
        frame = pd.read_excel(path, engine="calamine", dtype=object)
    except Exception as exc:
        raise BadExportFile(f"{path.name}: not a readable workbook ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in (id_column, time_column) if c not in frame.columns]
    if missing:
        raise BadExportFile(f"{path.name}: missing column(s) {', '.join(missing)}; has {list(frame.columns)}")
    frame[id_column] = frame[id_column].astype(str).str.strip()
    frame[time_column] = created_times(frame[time_column])
    return frame


def created_times(column: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(column, errors="coerce", format="mixed")
    if parsed.isna().any():
        bad = column[parsed.isna()].head(3).tolist()
        raise BadExportFile(f"unreadable creation times, e.g. {bad}")
    return parsed


def summarize(frame: pd.DataFrame, time_column: str) -> FileSummary:
    times = frame[time_column]
    if len(frame) == 0:
        return FileSummary(0, None, None, tuple(frame.columns))
    return FileSummary(
        len(frame), times.min().to_pydatetime(), times.max().to_pydatetime(), tuple(frame.columns)
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def archive_name(start: datetime, end: datetime) -> str:
    """合同协同_YYYYMMDD-YYYYMMDD.xlsx, both days inclusive; a window not on day boundaries gets
    its times too (合同协同_YYYYMMDDTHHMMSS-YYYYMMDDTHHMMSS.xlsx, end exclusive)."""
    if start.time() == datetime.min.time() and end.time() == datetime.min.time():
        last = end - pd.Timedelta(days=1)
        return f"合同协同_{start:%Y%m%d}-{last:%Y%m%d}.xlsx"
    return f"合同协同_{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}.xlsx"
