"""Python sources a pipeline can name (`source.callable`), as templates for real ones, which a
deployment keeps in its own `pipelines` package (PIPELINE_MODULES).

A source takes the FetchContext and returns rows keyed by the target table's field names — or a
FetchResult, which also says which groups (accounts) it meant to fetch and which failed, so the
summary can say "6/7 accounts".
"""

from __future__ import annotations

import hashlib

from bot.pipelines.context import FetchContext, FetchResult

DEMO_ACCOUNTS = tuple(f"demo-{n}" for n in range(1, 8))


def demo_ad_spend(ctx: FetchContext) -> FetchResult:
    """Seven ad accounts' spend for `ctx.day`, made up but the same for the same day (re-running
    a day writes nothing); the seventh account "fails", as a real platform's sometimes does.
    Fields: 账户ID (text), 日期 (date: filled in by the runner), 计划 (text), 消耗 (number)."""
    rows = []
    failed = {}
    for n, account in enumerate(DEMO_ACCOUNTS):
        if n == len(DEMO_ACCOUNTS) - 1:
            failed[account] = "示例：接口未返回数据"
            continue
        for plan in range(1 + n % 2):
            digest = hashlib.sha256(f"{account}/{plan}/{ctx.day.isoformat()}".encode()).digest()
            spend = int.from_bytes(digest[:4], "big") % 100_000 / 100
            rows.append({"账户ID": account, "计划": f"计划{plan + 1}", "消耗": spend})
    ctx.log.info("demo source fetched", extra={"rows": len(rows)})
    return FetchResult(rows, expected_groups=list(DEMO_ACCOUNTS), failed_groups=failed)
