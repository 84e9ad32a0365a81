"""How big a downloaded workbook may be before we read it.

An xlsx is a zip: a 228 KB file unpacked to 1.5 M rows once took 38 s and 700 MB to read.
A contract export holds at most 1000 rows, so anything far larger is refused up front, from
what the zip and the sheet say about themselves — entry sizes in the zip directory, the
sheet's declared `<dimension>`, and (since a file can leave it out or lie) a streamed count
of its `<row>` tags that stops as soon as the limit is passed. Nothing here builds the sheet.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings

_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s+ref="(?:[A-Z]+\d+:)?[A-Z]+(\d+)"')
_ROW_TAG = re.compile(rb"<(?:\w+:)?row[\s>/]")
_CHUNK = 1 << 20


class WorkbookTooLarge(ValueError):
    """The workbook is over a limit (the message names the limit and its setting)."""


@dataclass(frozen=True)
class WorkbookLimits:
    max_uncompressed_bytes: int = 200 << 20
    max_rows: int = 100_000

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkbookLimits:
        return cls(int(settings.export_max_uncompressed_mb * (1 << 20)), settings.export_max_rows)


def check_workbook(path: Path, limits: WorkbookLimits) -> None:
    """Raise WorkbookTooLarge when `path` would unpack or read past `limits`; a file that is
    not a zip at all is left to the reader, which says so in its own words."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return
    with archive:
        unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > limits.max_uncompressed_bytes:
            raise WorkbookTooLarge(
                f"{path.name}: unpacks to {unpacked >> 20} MB uncompressed, over the "
                f"{limits.max_uncompressed_bytes >> 20} MB limit (EXPORT_MAX_UNCOMPRESSED_MB)")
        for name in sheet_names(archive):
            rows = sheet_rows(archive, name, stop_after=limits.max_rows + 1)
            if rows > limits.max_rows + 1:  # + 1: the header row
                raise WorkbookTooLarge(
                    f"{path.name}: sheet {name} has more than {limits.max_rows} rows "
                    f"(EXPORT_MAX_ROWS; a contract export holds at most 1000)")


def sheet_names(archive: zipfile.ZipFile) -> list[str]:
    return [n for n in archive.namelist() if n.startswith("xl/worksheets/") and n.endswith(".xml")]


def sheet_rows(archive: zipfile.ZipFile, name: str, *, stop_after: int) -> int:
    """The sheet's declared last row when that is already past `stop_after` (refused without
    unpacking further), else its `<row>` tags counted while streaming — a declaration can lie
    low — stopping once past `stop_after`, so a huge sheet costs little."""
    count, tail = 0, b""
    with archive.open(name) as handle:
        head = handle.read(_CHUNK)
        declared = _DIMENSION.search(head[:8192])
        if declared and int(declared.group(1)) > stop_after:
            return int(declared.group(1))
        chunk = head
        while chunk:
            data = tail + chunk
            boundary = max(len(data) - 16, 0)  # a tag split across chunks is counted next time
            count += sum(1 for m in _ROW_TAG.finditer(data) if m.start() < boundary)
            tail = data[boundary:]
            if count > stop_after:
                return count
            chunk = handle.read(_CHUNK)
    return count + len(_ROW_TAG.findall(tail))
