"""The ads platform's deterministic seed: its app credentials, 7 advertisers and their daily
campaign rows (issue 17).

Rows are a pure function of (advertiser, date) — a SHA-256 of the two — so they are the same in
every run and every sandbox, for any date range. About one advertiser-day in seven has no data;
the others have 1–3 campaign rows (a typical day: ~6/7 accounts, ~13 rows, like the user's log
"6/7 accounts, 13 records").
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any

ADS_APP_ID = "1790000001"
ADS_SECRET = "sandbox-ads-secret"

# (advertiser_id, name, spend scale): fictional accounts in the style of the user's seven.
ADVERTISERS: tuple[tuple[str, str, float], ...] = (
    ("1790000000000001", "星河医疗美容医院有限公司-XL", 1.0),
    ("1790000000000002", "DX-星河医疗美容医院", 0.6),
    ("1790000000000003", "本地推-ka-星河医疗美容医院有限公司", 0.8),
    ("1790000000000004", "菲象_星河_10", 0.4),
    ("1790000000000005", "菲象_星河_27", 2.5),
    ("1790000000000006", "菲象_星河_新", 0.7),
    ("1790000000000007", "星河医疗美容-智慧本地推-1", 0.5),
)
ADVERTISER_NAMES = {aid: name for aid, name, _ in ADVERTISERS}

CAMPAIGN_THEMES = (
    "春季焕肤-信息流", "玻尿酸-搜索", "光子嫩肤-本地推", "皮秒祛斑-直播", "热玛吉-线索", "双眼皮-团购",
)

# Rows per advertiser-day, out of 84: 0 → 12 (1/7), 1 → 18, 2 → 24, 3 → 30 (mean 13/7 per account).
_COUNT_BUCKETS = ((12, 0), (30, 1), (54, 2), (84, 3))


def _unit(*parts: object) -> float:
    """A number in [0, 1) fixed by `parts` (the same in every process and Python version)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def campaigns(advertiser_id: str) -> list[tuple[str, str]]:
    """The advertiser's campaigns: (campaign_id, campaign_name), one per theme."""
    suffix = advertiser_id[-2:]
    return [(f"17{suffix}{index:011d}", f"{theme}-{suffix}")
            for index, theme in enumerate(CAMPAIGN_THEMES, 1)]


def row_count(advertiser_id: str, day: date) -> int:
    bucket = int(_unit("count", advertiser_id, day.isoformat()) * 84)
    return next(n for limit, n in _COUNT_BUCKETS if bucket < limit)


def daily_rows(advertiser_id: str, day: date) -> list[dict[str, Any]]:
    """The advertiser's campaign rows for one day ([] for an unknown advertiser)."""
    if advertiser_id not in ADVERTISER_NAMES:
        return []
    scale = next(s for aid, _, s in ADVERTISERS if aid == advertiser_id)
    stamp = day.isoformat()
    pool = campaigns(advertiser_id)
    # k distinct campaigns, in a stable order picked by the hash
    shuffled = sorted(pool, key=lambda c: _unit("pick", advertiser_id, stamp, c[0]))
    chosen = shuffled[:row_count(advertiser_id, day)]
    rows = []
    for campaign_id, campaign_name in sorted(chosen):
        show = int((800 + 14000 * _unit("show", campaign_id, stamp)) * scale)
        click = int(show * (0.01 + 0.04 * _unit("ctr", campaign_id, stamp)))
        convert = int(click * 0.12 * _unit("cvr", campaign_id, stamp))
        cost = round(click * (1.5 + 4.5 * _unit("cpc", campaign_id, stamp)), 2)
        rows.append({"stat_date": stamp, "advertiser_id": advertiser_id,
                     "advertiser_name": ADVERTISER_NAMES[advertiser_id], "campaign_id": campaign_id,
                     "campaign_name": campaign_name, "cost": cost, "show": show, "click": click,
                     "convert": convert})
    return rows


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
