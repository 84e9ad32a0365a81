"""Deterministic cooperation records (协同记录) for the sandbox's Feishu Contract export.

80,000 records from 2022-01-01 to `today`, with the unevenness real contract work has:
weekends and the Spring Festival are quiet, a spring 2022 lockdown almost stops work, volume
grows year on year, quarter ends get busier, a handful of multi-day bursts (audits, batch
renewals) spike it, and one day — a data migration on 2024-06-28 — holds 1,500 records, over
the export's 1000-row cap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

TOTAL = 80_000
FIRST_DAY = date(2022, 1, 1)
OVER_CAP_DAY = date(2024, 6, 28)
OVER_CAP_COUNT = 1_500
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# The export file's columns, in the order the contract UI writes them.
COLUMNS = (
    "协同记录ID",
    "合同编号",
    "合同名称",
    "协同类型",
    "操作人",
    "所属部门",
    "金额(元)",
    "状态",
    "备注",
    "创建时间",
)
ID_COLUMN, TIME_COLUMN = "协同记录ID", "创建时间"

KINDS = ("审批", "会签", "修改", "评论", "签署", "归档")
STATES = ("已完成", "进行中", "已撤回")
PEOPLE = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "孙强", "周杰", "吴婷", "郑浩", "冯雪")
DEPARTMENTS = ("法务部", "采购部", "销售部", "财务部", "行政部", "研发中心")
SUBJECTS = ("设备采购", "软件许可", "办公租赁", "物流服务", "市场推广", "技术咨询", "原材料供应", "保密协议")
BURSTS = (
    (date(2022, 9, 26), 5, 6.0),
    (date(2023, 3, 27), 6, 5.0),
    (date(2023, 11, 13), 4, 8.0),
    (date(2024, 12, 23), 7, 4.0),
    (date(2025, 6, 23), 5, 6.0),
    (date(2026, 4, 13), 3, 6.0),
)


@dataclass(frozen=True)
class Cooperation:
    values: tuple  # in COLUMNS order; None for an empty cell

    @property
    def record_id(self) -> str:
        return self.values[0]

    @property
    def created(self) -> str:
        return self.values[-1]


def day_weight(day: date) -> float:
    weight = 1.0 if day.weekday() < 5 else 0.15
    weight *= 1 + 0.35 * (day.year - FIRST_DAY.year)  # growth
    if day.month == 2 and day.day <= 20:
        weight *= 0.25  # Spring Festival
    if date(2022, 4, 1) <= day <= date(2022, 5, 31):
        weight *= 0.05  # lockdown
    if day.month in (3, 6, 9, 12) and day.day >= 20:
        weight *= 1.8  # quarter end
    for start, days, factor in BURSTS:
        if start <= day < start + timedelta(days=days):
            weight *= factor
    return weight


def daily_counts(today: date, total: int = TOTAL) -> dict[date, int]:
    """Records per day summing to `total` (largest-remainder rounding of the weights)."""
    days = [FIRST_DAY + timedelta(days=i) for i in range((today - FIRST_DAY).days + 1)]
    fixed = {OVER_CAP_DAY: OVER_CAP_COUNT} if FIRST_DAY <= OVER_CAP_DAY <= today else {}
    rest = [d for d in days if d not in fixed]
    remaining = total - sum(fixed.values())
    weights = [day_weight(d) for d in rest]
    scale = remaining / sum(weights)
    raw = [w * scale for w in weights]
    counts = [int(r) for r in raw]
    by_remainder = sorted(range(len(rest)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in by_remainder[: remaining - sum(counts)]:
        counts[i] += 1
    return {**dict(zip(rest, counts, strict=True)), **fixed}


def cooperation_records(today: date, seed: int = 20220101, total: int = TOTAL) -> list[Cooperation]:
    """Every record, sorted by creation time (then id); deterministic for (today, seed, total)."""
    rng = random.Random(seed)
    records: list[Cooperation] = []
    serial = 0
    for day, count in sorted(daily_counts(today, total).items()):
        # Working hours mostly; a migration day spreads over all 24 hours.
        spread = 24 * 3600 if count > 1000 else 11 * 3600
        offset = 0 if count > 1000 else 8 * 3600
        seconds = sorted(offset + rng.randrange(spread) for _ in range(count))
        for second in seconds:
            serial += 1
            created = datetime(day.year, day.month, day.day) + timedelta(seconds=second)
            contract = rng.randrange(1, 4000)
            amount = None if rng.random() < 0.12 else round(rng.uniform(500, 2_000_000), 2)
            note = None if rng.random() < 0.4 else f"第{rng.randrange(1, 9)}轮意见"
            records.append(
                Cooperation(
                    (
                        f"COOP{serial:08d}",
                        f"HT-{created.year}-{contract:05d}",
                        f"{rng.choice(SUBJECTS)}合同-{contract:05d}",
                        rng.choice(KINDS),
                        rng.choice(PEOPLE),
                        rng.choice(DEPARTMENTS),
                        amount,
                        rng.choice(STATES),
                        note,
                        created.strftime(TIME_FORMAT),
                    )
                )
            )
    return records
