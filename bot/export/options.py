"""How one export run is carried out: caps, window sizing, concurrency, back-off, timeouts.

Fixed when the run is created (from the settings and `export run`'s options) and stored with it
as JSON, so a run resumed after an upgrade or a settings change goes on exactly as it started.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.config import Settings
from bot.export.windows import PlanOptions


@dataclass(frozen=True)
class RunOptions:
    cap: int = 1000
    initial_days: int = 7
    fill: float = 0.9
    finer_bounds: bool = False
    keyword: str = ""
    search_tab: int = 0
    concurrency: int = 3
    max_failures: int = 8
    backoff_seconds: float = 5.0
    backoff_max_seconds: float = 600.0
    file_timeout_seconds: float = 900.0
    count_sizing: bool = False  # size windows with the list endpoint's totals
    submit_lease_seconds: float = 120.0  # a window claimed this long ago by a job that died is freed

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RunOptions:
        values = {
            "cap": settings.export_cap,
            "initial_days": settings.export_initial_days,
            "fill": settings.export_fill,
            "finer_bounds": settings.export_finer_bounds,
            "keyword": settings.export_keyword,
            "search_tab": settings.export_search_tab,
            "concurrency": settings.export_concurrency,
            "max_failures": settings.export_max_failures,
            "backoff_seconds": settings.export_backoff_seconds,
            "backoff_max_seconds": settings.export_backoff_max_seconds,
            "file_timeout_seconds": settings.export_file_timeout_seconds,
            "submit_lease_seconds": settings.export_submit_lease_seconds,
            "count_sizing": bool(settings.export_count_path),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> RunOptions:
        return cls(**json.loads(text))

    def plan(self) -> PlanOptions:
        unit = timedelta(seconds=1) if self.finer_bounds else timedelta(days=1)
        return PlanOptions(
            cap=self.cap, initial=timedelta(days=self.initial_days), fill=self.fill, min_span=unit
        )

    def filters(self) -> dict[str, Any]:
        return {"keyword": self.keyword, "searchTabEnumCode": self.search_tab}

    @property
    def file_timeout(self) -> timedelta:
        return timedelta(seconds=self.file_timeout_seconds)
