"""Python sources a pipeline can name (`source.callable`), as templates for real ones, which a
deployment keeps in its own `pipelines` package (PIPELINE_MODULES).

A source takes the FetchContext and returns rows keyed by the target table's field names — or a
FetchResult, which also says which groups (accounts) it meant to fetch and which failed, so the
summary can say "6/7 accounts".
"""

from __future__ import annotations

import hashlib

from bot.pipelines.context import FetchContext, FetchResult
from bot.tokens.providers import Provider, json_app_secret_grant

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


# -- the user's own daily job (seeds/002): an ad platform's report into 广告日报 --------------------

# The ad platform's OAuth: its own refresh body (JSON app_id/secret), 24 h access tokens and 30-day
# refresh tokens that rotate on use; 40102 from its API means the access token expired (40105:
# invalid, e.g. the grant was revoked — a refresh then says whether the grant is gone).
# Credentials and the API base come from OAUTH_PROVIDERS {"ads": {"client_id", "client_secret",
# "api_url"}}; the sandbox emulates it under /ads.
ADS = Provider("ads", api_url="https://ads.invalid", token_url="/open_api/oauth2/refresh_token/",
               grant=json_app_secret_grant, access_seconds=86400, refresh_seconds=30 * 86400,
               expired_codes={40102, 40105}, grant_invalid_codes={40103, 40107},
               transient_codes={40100, 50000}, title="广告平台")
PROVIDERS = [ADS]

ADS_TIMEOUT = (5, 30)  # connect, read (seconds)


class AdsApiError(RuntimeError):
    """The ad platform refused a call for a reason a refreshed token does not fix."""


def _ads_get(ctx: FetchContext, path: str, params: dict[str, str] | None = None) -> list[dict]:
    """One API call with the valid token; an expired token (40102) is refreshed once, through the
    one token path — the call the seed's `sync_stable.py` got wrong by reading a token file."""
    token = ctx.token()
    for attempt in (1, 2):
        answer = ctx.http.get(f"{ctx.api_url()}{path}", params=params, headers={"Access-Token": token},
                              timeout=ADS_TIMEOUT)
        answer.raise_for_status()  # 429/5xx: the run is retried with backoff
        body = answer.json()
        if body.get("code") == 0:
            return list((body.get("data") or {}).get("list") or [])
        if ADS.access_rejected(body.get("code")) and attempt == 1:
            token = ctx.token_rejected(token)
            continue
        raise AdsApiError(f"{path}: code {body.get('code')}: {body.get('message')}")
    raise AssertionError("unreachable")  # pragma: no cover


def ads_daily_report(ctx: FetchContext) -> FetchResult:
    """Yesterday's figures of every advertiser, one row per campaign, for 广告日报 (key 日期 + 账户ID
    + 计划ID, partition 日期). An advertiser whose report fails is reported, not fatal: the run
    says "6/7 accounts", as the user's script did."""
    advertisers = _ads_get(ctx, "/open_api/v1/advertisers/")
    rows: list[dict] = []
    failed: dict[str, str] = {}
    for advertiser in advertisers:
        account = str(advertiser["advertiser_id"])
        try:
            report = _ads_get(ctx, "/open_api/v1/report/advertiser/daily/",
                              {"advertiser_id": account, "date": ctx.day.isoformat()})
        except AdsApiError as exc:
            failed[account] = str(exc)
            continue
        rows.extend({
            "日期": ctx.day, "账户ID": account, "账户名称": str(row.get("advertiser_name") or ""),
            "计划ID": str(row["campaign_id"]), "计划名称": str(row.get("campaign_name") or ""),
            "消耗": float(row.get("cost") or 0), "展示": int(row.get("show") or 0),
            "点击": int(row.get("click") or 0), "转化": int(row.get("convert") or 0),
        } for row in report)
    ctx.log.info("ads report fetched", extra={"rows": len(rows), "accounts": len(advertisers)})
    return FetchResult(rows, expected_groups=[str(a["advertiser_id"]) for a in advertisers],
                       failed_groups=failed)
