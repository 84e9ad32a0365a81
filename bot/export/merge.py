"""Merging a run's window files into one workbook, CSV and table, with a validation report.

Files are read with python-calamine; columns are unified (the first file's order, others'
extra columns appended), cells normalised to plain values (text, numbers, None; creation
times back to "YYYY-MM-DD HH:MM:SS"), rows deduplicated on the record id and sorted by
creation time. The report says, per window, what was asked and what came back, and checks
what can be checked: windows tile the range, ids are unique, every column is present in
every file, null rates, and a spot check of random records against their source files read
by a second, independent reader (openpyxl).
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.cells import csv_row, xlsx_row
from bot.export.files import read_export
from bot.export.limits import WorkbookLimits
from bot.models import CooperationRecord, ExportFile, ExportRun, ExportWindow, utcnow
from bot.private import private_dir, private_file

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
UPSERT_CHUNK = 1000


@dataclass(frozen=True)
class SourceFile:
    path: Path
    window_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    file_id: int | None = None


@dataclass
class Merged:
    columns: list[str]
    rows: list[tuple]  # in `columns` order, sorted by creation time then id
    origin: dict[str, int]  # record id → index of the source file it was taken from
    rows_read: int = 0
    duplicates_removed: int = 0
    conflicting_duplicates: list[str] = field(default_factory=list)
    per_file: list[dict[str, Any]] = field(default_factory=list)


def plain(value: Any) -> Any:
    """A cell as JSON, CSV and the DB can all hold it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.strftime(TIME_FORMAT)
    return value


def merge(
    sources: list[SourceFile], *, id_column: str, time_column: str, limits: WorkbookLimits | None = None
) -> Merged:
    columns: list[str] = []
    seen: dict[str, tuple] = {}
    origin: dict[str, int] = {}
    result = Merged(columns, [], origin)
    for index, source in enumerate(sources):
        frame = read_export(source.path, id_column=id_column, time_column=time_column, limits=limits)
        for column in frame.columns:
            if column not in columns:
                columns.append(column)
        result.per_file.append({"file": source.path.name, "rows": len(frame), "columns": list(frame.columns)})
        result.rows_read += len(frame)
        positions = [list(frame.columns).index(c) if c in frame.columns else None for c in columns]
        for raw in frame.itertuples(index=False, name=None):
            values = tuple(plain(raw[p]) if p is not None else None for p in positions)
            record_id = values[columns.index(id_column)]
            if record_id in seen:
                result.duplicates_removed += 1
                if seen[record_id] != values[: len(seen[record_id])]:
                    result.conflicting_duplicates.append(record_id)
                continue
            seen[record_id] = values
            origin[record_id] = index
    width = len(columns)
    time_at = columns.index(time_column)
    id_at = columns.index(id_column)
    rows = [v + (None,) * (width - len(v)) for v in seen.values()]
    rows.sort(key=lambda r: (r[time_at], r[id_at]))
    result.rows = rows
    return result


def null_rates(columns: list[str], rows: list[tuple]) -> dict[str, float]:
    if not rows:
        return {c: 0.0 for c in columns}
    return {
        c: round(sum(1 for r in rows if r[i] is None or r[i] == "") / len(rows), 4)
        for i, c in enumerate(columns)
    }


def spot_check(
    merged: Merged, sources: list[SourceFile], *, id_column: str, sample: int, rng: random.Random
) -> dict[str, Any]:
    """Re-read `sample` random records from their source files with openpyxl and compare."""
    from openpyxl import load_workbook

    ids = rng.sample(sorted(merged.origin), min(sample, len(merged.origin)))
    wanted: dict[int, set[str]] = {}
    for record_id in ids:
        wanted.setdefault(merged.origin[record_id], set()).add(record_id)
    found: dict[str, dict[str, Any]] = {}
    for index, record_ids in wanted.items():
        book = load_workbook(sources[index].path, read_only=True)
        sheet = book.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header = [str(c).strip() for c in next(rows)]
        for row in rows:
            doc = dict(zip(header, row, strict=False))
            if str(doc.get(id_column)) in record_ids:
                found[str(doc[id_column])] = {k: plain(v) for k, v in doc.items()}
        book.close()
    by_id = {r[merged.columns.index(id_column)]: r for r in merged.rows}
    mismatches = []
    for record_id in ids:
        source_doc = found.get(record_id)
        mine = dict(zip(merged.columns, by_id[record_id], strict=True))
        if source_doc is None or any(_same(mine.get(k), v) is False for k, v in source_doc.items()):
            mismatches.append({"record": record_id, "merged": mine, "source": source_doc})
    return {"sampled": len(ids), "mismatches": mismatches}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-9)
    return (a if a != "" else None) == (b if b != "" else None)


def coverage_gaps(
    range_start: datetime, range_end: datetime, windows: Iterable[tuple[datetime, datetime]]
) -> list[list[str]]:
    """Stretches of the range that no accepted (or reported) window covers."""
    gaps, cursor = [], range_start
    for start, end in sorted(windows):
        if start > cursor:
            gaps.append([cursor.isoformat(sep=" "), start.isoformat(sep=" ")])
        cursor = max(cursor, end)
    if cursor < range_end:
        gaps.append([cursor.isoformat(sep=" "), range_end.isoformat(sep=" ")])
    return gaps


# -- I/O: the run's files in, workbook / CSV / table / report out --------------------------


@dataclass(frozen=True)
class Outputs:
    workbook: Path
    csv: Path
    report: Path
    records: int
    ok: bool


def run_sources(engine: Engine, run_id: int) -> tuple[ExportRun, list[SourceFile], list[ExportWindow]]:
    with Session(engine) as session:
        run = session.get_one(ExportRun, run_id)
        pairs = session.execute(
            select(ExportWindow, ExportFile)
            .join(ExportFile, ExportFile.id == ExportWindow.file_id)
            .where(ExportWindow.run_id == run_id, ExportWindow.state == "verified")
            .order_by(ExportWindow.start_at)
        ).all()
        windows = list(
            session.scalars(
                select(ExportWindow)
                .where(ExportWindow.run_id == run_id)
                .order_by(ExportWindow.start_at, ExportWindow.id)
            )
        )
    sources = [SourceFile(Path(f.path), w.id, w.start_at, w.end_at, f.id) for w, f in pairs]
    return run, sources, windows


def build_outputs(
    engine: Engine,
    run_id: int,
    out_dir: Path,
    *,
    id_column: str,
    time_column: str,
    spot_sample: int = 50,
    seed: int | None = None,
    limits: WorkbookLimits | None = None,
) -> Outputs:
    run, sources, windows = run_sources(engine, run_id)
    merged = merge(sources, id_column=id_column, time_column=time_column, limits=limits)
    report = validation_report(
        run,
        sources,
        windows,
        merged,
        id_column=id_column,
        spot=spot_check(merged, sources, id_column=id_column, sample=spot_sample, rng=random.Random(seed)),
    )
    private_dir(out_dir)
    stem = f"合同协同_{run.range_start:%Y%m%d}-{run.range_end:%Y%m%d}_merged"
    workbook, csv_path, report_path = (
        out_dir / f"{stem}.xlsx",
        out_dir / f"{stem}.csv",
        out_dir / f"{stem}.validation.json",
    )
    write_workbook(workbook, merged, report)
    write_csv(csv_path, merged)
    private_file(report_path).write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    upsert_records(
        engine,
        merged,
        id_column=id_column,
        time_column=time_column,
        file_of=lambda index: sources[index].file_id,
    )
    return Outputs(workbook, csv_path, report_path, len(merged.rows), report["ok"])


def validation_report(
    run: ExportRun,
    sources: list[SourceFile],
    windows: list[ExportWindow],
    merged: Merged,
    *,
    id_column: str,
    spot: dict[str, Any],
) -> dict[str, Any]:
    expected = merged.columns
    differences = []
    for info in merged.per_file:
        missing = [c for c in expected if c not in info["columns"]]
        extra = [c for c in info["columns"] if c not in expected]
        if missing or extra or info["columns"] != expected[: len(info["columns"])]:
            differences.append({"file": info["file"], "missing": missing, "extra": extra})
    by_window = {s.window_id: info for s, info in zip(sources, merged.per_file, strict=True)}
    covered = [(w.start_at, w.end_at) for w in windows if w.state in ("verified", "unexportable")]
    unexportable = [
        {
            "window": w.id,
            "start": w.start_at.isoformat(sep=" "),
            "end": w.end_at.isoformat(sep=" "),
            "reason": w.reason,
        }
        for w in windows
        if w.state in ("unexportable", "failed")
    ]
    gaps = coverage_gaps(run.range_start, run.range_end, covered)
    report = {
        "generated_at": utcnow().isoformat(),
        "run": run.id,
        "range": [run.range_start.isoformat(sep=" "), run.range_end.isoformat(sep=" ")],
        "export_calls": run.calls,
        "windows": [
            {
                "window": w.id,
                "start": w.start_at.isoformat(sep=" "),
                "end": w.end_at.isoformat(sep=" "),
                "state": w.state,
                "rows": w.rows,
                "attempts": w.attempts,
                "file": (by_window.get(w.id) or {}).get("file"),
            }
            for w in windows
            if w.state in ("verified", "unexportable", "failed")
        ],
        "totals": {
            "files": len(sources),
            "rows_read": merged.rows_read,
            "duplicates_removed": merged.duplicates_removed,
            "conflicting_duplicates": merged.conflicting_duplicates[:50],
            "records": len(merged.rows),
        },
        "columns": {"expected": expected, "differences": differences},
        "null_rates": null_rates(merged.columns, merged.rows),
        "not_exported": unexportable,
        "coverage_gaps": gaps,
        "spot_check": spot,
    }
    report["ok"] = (
        not gaps
        and not unexportable
        and not merged.conflicting_duplicates
        and not spot["mismatches"]
        and not differences
    )
    return report


def write_workbook(path: Path, merged: Merged, report: dict[str, Any]) -> None:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("协同记录")
    sheet.append(xlsx_row(sheet, merged.columns))  # text stays text: bot/cells.py
    for row in merged.rows:
        sheet.append(xlsx_row(sheet, row))
    summary = book.create_sheet("validation")
    for key, value in _report_rows(report):
        summary.append(xlsx_row(summary, [key, value]))
    partial = path.with_suffix(".part")
    book.save(private_file(partial))  # created 0600 before openpyxl writes into it
    partial.replace(path)


def _report_rows(report: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    yield "ok", str(report["ok"])
    yield "range", " ~ ".join(report["range"])
    yield "export calls", report["export_calls"]
    for key, value in report["totals"].items():
        yield key, json.dumps(value, ensure_ascii=False) if isinstance(value, list) else value
    yield "coverage gaps", json.dumps(report["coverage_gaps"], ensure_ascii=False)
    yield "not exported", json.dumps(report["not_exported"], ensure_ascii=False)
    yield "column differences", json.dumps(report["columns"]["differences"], ensure_ascii=False)
    yield (
        "spot check",
        f"{report['spot_check']['sampled']} sampled, {len(report['spot_check']['mismatches'])} mismatches",
    )
    for column, rate in report["null_rates"].items():
        yield f"null rate: {column}", rate
    yield "", ""
    yield "window", "start | end | state | rows | attempts | file"
    for w in report["windows"]:
        yield (
            str(w["window"]),
            f"{w['start']} | {w['end']} | {w['state']} | {w['rows']} | {w['attempts']} | {w['file']}",
        )


def write_csv(path: Path, merged: Merged) -> None:
    partial = path.with_suffix(".part")
    # BOM: Excel opens it as UTF-8
    with private_file(partial).open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_row(merged.columns))  # formula-like text gets a quote: bot/cells.py
        writer.writerows(csv_row(row) for row in merged.rows)
    partial.replace(path)


def upsert_records(engine: Engine, merged: Merged, *, id_column: str, time_column: str, file_of) -> int:
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    id_at, time_at = merged.columns.index(id_column), merged.columns.index(time_column)
    now = utcnow()
    values = [
        {
            "record_id": r[id_at],
            "created_at": datetime.strptime(r[time_at], TIME_FORMAT),
            "data": json.dumps(dict(zip(merged.columns, r, strict=True)), ensure_ascii=False),
            "file_id": file_of(merged.origin[r[id_at]]),
            "updated_at": now,
        }
        for r in merged.rows
    ]
    with engine.begin() as conn:
        for start in range(0, len(values), UPSERT_CHUNK):
            stmt = dialect.insert(CooperationRecord).values(values[start : start + UPSERT_CHUNK])
            stmt = stmt.on_conflict_do_update(
                index_elements=["record_id"],
                set_={
                    "created_at": stmt.excluded.created_at,
                    "data": stmt.excluded.data,
                    "file_id": stmt.excluded.file_id,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
            conn.execute(stmt)
    return len(values)
