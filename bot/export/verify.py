"""`export verify`: the table must hold exactly what the run's files hold."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.export.limits import WorkbookLimits
from bot.export.merge import coverage_gaps, merge, run_sources
from bot.models import CooperationRecord


def verify_run(
    engine: Engine, run_id: int, *, id_column: str, time_column: str, limits: WorkbookLimits | None = None
) -> dict[str, Any]:
    run, sources, windows = run_sources(engine, run_id)
    merged = merge(sources, id_column=id_column, time_column=time_column, limits=limits)
    expected = {
        r[merged.columns.index(id_column)]: dict(zip(merged.columns, r, strict=True)) for r in merged.rows
    }
    with Session(engine) as session:
        stored = {
            rid: json.loads(data)
            for rid, data in session.execute(select(CooperationRecord.record_id, CooperationRecord.data))
        }
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    differing = sorted(rid for rid in set(expected) & set(stored) if expected[rid] != stored[rid])
    gaps = coverage_gaps(
        run.range_start, run.range_end, [(w.start_at, w.end_at) for w in windows if w.state == "verified"]
    )
    ok = not (missing or extra or differing or gaps or merged.conflicting_duplicates)
    return {
        "ok": ok,
        "run": run_id,
        "files": len(sources),
        "records_in_files": len(expected),
        "records_in_table": len(stored),
        "missing_from_table": missing[:20],
        "not_in_files": extra[:20],
        "differing": differing[:20],
        "coverage_gaps": gaps,
        "summary": (
            f"{len(stored)} records in the table, {len(expected)} in {len(sources)} files; "
            f"{len(missing)} missing, {len(extra)} extra, {len(differing)} differing, "
            f"{len(gaps)} coverage gaps"
        ),
    }
