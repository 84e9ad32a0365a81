"""When a pipeline is due and which days a scheduled run covers (pure: the clock is passed in).

Schedules are `daily HH:MM` (wall-clock time in the pipeline time zone, PIPELINE_TIMEZONE) or
`every Nm` / `every Nh`. A pipeline is due when `next_due(schedule, last, now) <= now`, `last`
being the slot it last ran for (or when it was created). A cron that was down over several slots
runs the pipeline once, not once per missed slot: `latest_slot` is what it records; the days the
missed slots would have written are caught up by `scheduled_days` instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAILY = re.compile(r"^daily\s+([01]?\d|2[0-3]):([0-5]\d)$")
EVERY = re.compile(r"^every\s+([1-9]\d{0,3})\s*([mh])$")
MIN_EVERY = timedelta(minutes=5)  # each run reads the whole table: not more often than this
MAX_EVERY = timedelta(days=7)


@dataclass(frozen=True)
class Daily:
    at: time


@dataclass(frozen=True)
class Every:
    interval: timedelta


Schedule = Daily | Every


def parse_schedule(text: str) -> Schedule:
    """`daily 07:00`, `every 30m`, `every 2h`; ValueError naming the accepted forms otherwise."""
    spoken = " ".join(str(text).strip().lower().split())
    if match := DAILY.match(spoken):
        return Daily(time(int(match[1]), int(match[2])))
    if match := EVERY.match(spoken):
        amount = int(match[1])
        interval = timedelta(minutes=amount) if match[2] == "m" else timedelta(hours=amount)
        if not MIN_EVERY <= interval <= MAX_EVERY:
            raise ValueError(f"schedule {text!r}: the interval must be between 5 minutes and 7 days")
        return Every(interval)
    raise ValueError(f"schedule {text!r} is not `daily HH:MM`, `every Nm` or `every Nh`")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("cadence needs aware datetimes")
    return moment.astimezone(UTC)


def _slot(day: date, at: time, zone: ZoneInfo) -> datetime:
    """`at` on `day` in `zone`, in UTC (a wall-clock time skipped by a DST jump maps forward)."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def next_due(schedule: str | Schedule, last: datetime | None, now: datetime,
             zone: ZoneInfo | str = "Asia/Shanghai") -> datetime:
    """The first slot after `last` (UTC). Never ran (`last` None): due now. Compare with `now`:
    due when the result is not after it."""
    rule = parse_schedule(schedule) if isinstance(schedule, str) else schedule
    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    now = _utc(now)
    if last is None:
        return now
    last = _utc(last)
    if isinstance(rule, Every):
        return last + rule.interval
    local_day = last.astimezone(zone).date()
    for offset in range(3):  # today's slot, else tomorrow's (two: a DST day can lack one)
        candidate = _slot(local_day + timedelta(days=offset), rule.at, zone)
        if candidate > last:
            return candidate
    raise AssertionError("unreachable: a daily slot exists within three days")


def latest_slot(schedule: str | Schedule, now: datetime, zone: ZoneInfo | str = "Asia/Shanghai") -> datetime:
    """The most recent slot at or before `now` (UTC), to record as the slot a run was for; for
    `every`, `now` itself."""
    rule = parse_schedule(schedule) if isinstance(schedule, str) else schedule
    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    now = _utc(now)
    if isinstance(rule, Every):
        return now
    local_day = now.astimezone(zone).date()
    for offset in range(3):
        candidate = _slot(local_day - timedelta(days=offset), rule.at, zone)
        if candidate <= now:
            return candidate
    raise AssertionError("unreachable: a daily slot exists within three days")


def local_today(now: datetime, zone: ZoneInfo | str = "Asia/Shanghai") -> date:
    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    return _utc(now).astimezone(zone).date()


def scheduled_days(today: date, lag_days: int, covered_through: date | None,
                   catch_up: int) -> tuple[date, date]:
    """The days (first, last) a scheduled run writes: up to `today - lag_days` (yesterday, for the
    morning run), from the day after the last one written when runs were missed — at most
    `catch_up` days — else just that one day (re-running it is harmless: zero writes)."""
    last = today - timedelta(days=lag_days)
    first = last
    if covered_through is not None and covered_through < last:
        first = covered_through + timedelta(days=1)
    first = max(first, last - timedelta(days=catch_up - 1))
    return first, last


def days_between(first: date, last: date) -> list[date]:
    """Every day from `first` to `last`, both included."""
    if last < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
