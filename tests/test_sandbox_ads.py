"""The sandbox's ads platform (issue 17): its own refresh and a standard OAuth2 refresh onto one
grant store (single-use, rotating refresh tokens), the data endpoints' token checks, the
deterministic daily report, faults and the `/sandbox/ads/*` controls — over HTTP, against a
running sandbox."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
import requests

from sandbox.seed_ads import ADS_APP_ID, ADS_SECRET, ADVERTISERS
from sandbox.state import SandboxConfig
from tests.helpers import running_sandbox

TODAY = "2025-12-31"  # the platform's "today", pinned so date ranges are in the past
ROW_KEYS = {"stat_date", "advertiser_id", "advertiser_name", "campaign_id", "campaign_name", "cost", "show",
            "click", "convert"}


class Ads:
    """A client of one sandbox's ads platform and its controls."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def control(self, path: str, body: dict | None = None) -> dict:
        answer = self.http.post(f"{self.base}/sandbox/ads/{path}", json=body or {}, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def stats(self) -> dict:
        return self.http.get(f"{self.base}/sandbox/ads/stats", timeout=10).json()

    def refresh(self, refresh_token: str, *, app_id: object = ADS_APP_ID, secret: str = ADS_SECRET) -> dict:
        body = {"app_id": app_id, "secret": secret, "grant_type": "refresh_token",
                "refresh_token": refresh_token}
        answer = requests.post(f"{self.base}/ads/open_api/oauth2/refresh_token/", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def oauth2(self, form: dict, auth: tuple[str, str] | None = None) -> requests.Response:
        return requests.post(f"{self.base}/ads/oauth2/token", data=form, auth=auth, timeout=10)

    def report(self, token: str | None, advertiser_id: str, day: str) -> requests.Response:
        headers = {} if token is None else {"Access-Token": token}
        return self.http.get(f"{self.base}/ads/open_api/v1/report/advertiser/daily/", headers=headers,
                             params={"advertiser_id": advertiser_id, "date": day}, timeout=10)

    def report_code(self, token: str | None, advertiser_id: str = ADVERTISERS[0][0], day: str = TODAY) -> int:
        return self.report(token, advertiser_id, day).json()["code"]

    def truth(self, first: str, last: str) -> dict:
        answer = self.http.get(f"{self.base}/sandbox/ads/report", params={"from": first, "to": last},
                               timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with running_sandbox(SandboxConfig()) as (url, _):
        yield url


@pytest.fixture
def ads(sandbox_url: str) -> Ads:
    client = Ads(sandbox_url)
    client.control("reset")
    client.control("today", {"date": TODAY})
    return client


def test_a_grant_reads_advertisers_and_reports(ads: Ads):
    grant = ads.control("grant")
    assert set(grant) == {"access_token", "refresh_token", "expires_in", "refresh_token_expires_in"}
    assert (grant["expires_in"], grant["refresh_token_expires_in"]) == (86400, 2592000)
    listed = ads.http.get(f"{ads.base}/ads/open_api/v1/advertisers/",
                          headers={"Access-Token": grant["access_token"]}, timeout=10).json()
    assert (listed["code"], listed["message"]) == (0, "OK")
    assert [a["advertiser_id"] for a in listed["data"]["list"]] == [a[0] for a in ADVERTISERS]
    rows = []
    for advertiser_id, _, _ in ADVERTISERS:
        answer = ads.report(grant["access_token"], advertiser_id, "2025-12-01").json()
        assert answer["code"] == 0 and answer["request_id"]
        rows += answer["data"]["list"]
    assert rows and all(set(r) == ROW_KEYS and r["stat_date"] == "2025-12-01" for r in rows)
    assert all(isinstance(r["cost"], float | int) and round(r["cost"], 2) == r["cost"] for r in rows)
    assert all(isinstance(r[k], int) for r in rows for k in ("show", "click", "convert"))
    assert ads.stats()["report_calls"] == 7


def test_report_refusals_and_dates(ads: Ads):
    token = ads.control("grant")["access_token"]
    assert ads.report_code(None) == 40105
    assert ads.report_code("not-a-token") == 40105
    assert ads.report_code(token, day="2025/12/01") == 40000
    assert ads.report_code(token, day="2025-02-30") == 40000
    assert ads.report_code(token, advertiser_id="42") == 40000
    tomorrow = ads.report(token, ADVERTISERS[0][0], "2026-01-01").json()
    assert tomorrow["code"] == 0 and tomorrow["data"]["list"] == []
    ads.control("expire")
    assert ads.report_code(token) == 40102
    expired = ads.report(token, ADVERTISERS[0][0], TODAY).json()
    assert (expired["message"], expired["data"]) == ("access_token expired", {})
    calls = ads.stats()["calls"]
    assert [c["code"] for c in calls][-2:] == [40102, 40102] and calls[-1]["status"] == 200


def test_ads_style_refresh_rotates(ads: Ads):
    first = ads.control("grant")
    answer = ads.refresh(first["refresh_token"], app_id=int(ADS_APP_ID))  # app_id as a number works too
    assert (answer["code"], answer["message"]) == (0, "OK") and answer["request_id"]
    second = answer["data"]
    assert set(second) == {"access_token", "expires_in", "refresh_token", "refresh_token_expires_in"}
    assert (second["expires_in"], second["refresh_token_expires_in"]) == (86400, 2592000)
    assert second["refresh_token"] != first["refresh_token"]
    reused = ads.refresh(first["refresh_token"])
    assert (reused["code"], reused["message"], reused["data"]) == (40107, "refresh_token invalid", {})
    assert ads.report_code(first["access_token"]) == 0  # the old access token lives until its expiry
    assert ads.report_code(second["access_token"]) == 0
    assert ads.refresh(second["refresh_token"])["code"] == 0  # the new one rotates in turn
    stats = ads.stats()
    assert stats["refreshes"] == 2
    assert [a["outcome"] for a in stats["refresh_attempts"]] == ["ok", "40107", "ok"]
    assert {a["style"] for a in stats["refresh_attempts"]} == {"ads"}


def test_ads_style_refresh_errors(ads: Ads):
    token = ads.control("grant")["refresh_token"]
    assert ads.refresh(token, secret="wrong")["code"] == 40001
    assert ads.refresh(token, app_id="1790000002")["code"] == 40001
    assert ads.refresh("unknown")["code"] == 40107
    missing = requests.post(f"{ads.base}/ads/open_api/oauth2/refresh_token/", timeout=10,
                            json={"app_id": ADS_APP_ID, "grant_type": "refresh_token"}).json()
    assert missing["code"] == 40002 and missing["data"] == {}
    ads.control("refresh-expires-in", {"seconds": 3600})
    assert ads.stats()["refresh_token_expires_in"][0] <= 3600
    ads.control("refresh-expires-in", {"seconds": 0})
    expired = ads.refresh(token)
    assert (expired["code"], expired["message"]) == (40103, "refresh_token expired")
    assert ads.stats()["refreshes"] == 0  # failed attempts rotated nothing


def test_concurrent_refreshes_with_one_token_make_exactly_one_pair(ads: Ads):
    token = ads.control("grant")["refresh_token"]
    codes: list[int] = []
    start = threading.Barrier(16)

    def refresh() -> None:
        start.wait()
        codes.append(ads.refresh(token)["code"])

    threads = [threading.Thread(target=refresh) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert Counter(codes) == {0: 1, 40107: 15}
    assert ads.stats()["refreshes"] == 1


def test_revoke_stops_refresh_and_reports(ads: Ads):
    grant = ads.control("grant")
    assert ads.control("revoke")["revoked"] == 1
    assert ads.refresh(grant["refresh_token"])["code"] == 40107
    assert ads.report_code(grant["access_token"]) == 40105
    invalid_grant = ads.oauth2({"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
                               auth=(ADS_APP_ID, ADS_SECRET))
    assert (invalid_grant.status_code, invalid_grant.json()["error"]) == (400, "invalid_grant")


def test_standard_oauth2_refresh(ads: Ads):
    grant = ads.control("grant")
    by_body = ads.oauth2({"grant_type": "refresh_token", "refresh_token": grant["refresh_token"],
                          "client_id": ADS_APP_ID, "client_secret": ADS_SECRET})
    assert by_body.status_code == 200 and by_body.headers["Cache-Control"] == "no-store"
    pair = by_body.json()
    assert pair["token_type"] == "Bearer" and (pair["expires_in"], pair["refresh_token_expires_in"]) == (
        86400, 2592000)
    by_basic = ads.oauth2({"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]},
                          auth=(ADS_APP_ID, ADS_SECRET))
    assert by_basic.status_code == 200
    assert ads.report_code(by_basic.json()["access_token"]) == 0
    # one grant store behind both doors: a token spent at one is refused at the other
    assert ads.refresh(pair["refresh_token"])["code"] == 40107
    used = ads.oauth2({"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
                      auth=(ADS_APP_ID, ADS_SECRET))
    assert (used.status_code, used.json()["error"]) == (400, "invalid_grant")
    attempts = ads.stats()["refresh_attempts"]
    assert [(a["style"], a["outcome"]) for a in attempts] == [
        ("oauth2", "ok"), ("oauth2", "ok"), ("ads", "40107"), ("oauth2", "invalid_grant")]


def test_standard_oauth2_errors(ads: Ads):
    token = ads.control("grant")["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": token}
    bad_basic = ads.oauth2(form, auth=(ADS_APP_ID, "wrong"))
    assert (bad_basic.status_code, bad_basic.json()["error"]) == (401, "invalid_client")
    assert "WWW-Authenticate" in bad_basic.headers
    no_client = ads.oauth2(form)
    assert (no_client.status_code, no_client.json()["error"]) == (401, "invalid_client")
    creds = (ADS_APP_ID, ADS_SECRET)
    assert ads.oauth2({"refresh_token": token}, auth=creds).json()["error"] == "invalid_request"
    assert ads.oauth2({"grant_type": "refresh_token"}, auth=creds).json()["error"] == "invalid_request"
    unsupported = ads.oauth2({"grant_type": "password"}, auth=creds)
    assert (unsupported.status_code, unsupported.json()["error"]) == (400, "unsupported_grant_type")
    unknown = ads.oauth2({"grant_type": "refresh_token", "refresh_token": "nope"}, auth=creds)
    assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_grant")
    ads.control("refresh-expires-in", {"seconds": 0})
    expired = ads.oauth2(form, auth=creds)
    assert expired.json() == {"error": "invalid_grant", "error_description": "refresh token expired"}
    assert ads.stats()["refreshes"] == 0


def test_report_is_deterministic_and_plausible_over_90_days(ads: Ads):
    first, last = date(2025, 10, 1), date(2025, 12, 29)  # 90 days
    truth = ads.truth(first.isoformat(), last.isoformat())
    with running_sandbox(SandboxConfig(seed=1)) as (other_url, _):
        other = Ads(other_url)
        other.control("today", {"date": TODAY})
        assert other.truth(first.isoformat(), last.isoformat()) == truth
    assert len(truth["days"]) == 90
    advertiser_days = 90 * len(ADVERTISERS)
    empty = advertiser_days - sum(d["accounts"] for d in truth["days"])
    assert 0.08 < empty / advertiser_days < 0.22  # about one advertiser-day in seven has no data
    per_day = [d["rows"] for d in truth["days"]]
    assert 11 <= sum(per_day) / 90 <= 15 and min(per_day) >= 3 and max(per_day) <= 21
    accounts = Counter(d["accounts"] for d in truth["days"])
    assert min(accounts) >= 3 and accounts.most_common(1)[0][0] in (6, 7)  # typically 6/7 accounts
    assert truth["total"] == sum(per_day) == len(truth["list"])
    # the truth is what the per-advertiser endpoint answers, call by call
    token = ads.control("grant")["access_token"]
    served = []
    for n in range(90):
        day = (first + timedelta(days=n)).isoformat()
        for advertiser_id, _, _ in ADVERTISERS:
            answer = ads.report(token, advertiser_id, day).json()
            assert answer["code"] == 0
            served += answer["data"]["list"]
    assert served == truth["list"]


def test_report_truth_has_nothing_after_today(ads: Ads):
    truth = ads.truth("2025-12-30", "2026-01-02")
    assert [d["rows"] > 0 for d in truth["days"]][2:] == [False, False]
    assert {r["stat_date"] for r in truth["list"]} <= {"2025-12-30", "2025-12-31"}


def test_faults_are_seeded_and_off_by_default(ads: Ads):
    token = ads.control("grant")["access_token"]
    assert {ads.report(token, ADVERTISERS[0][0], TODAY).status_code for _ in range(5)} == {200}

    def statuses() -> list[int]:
        ads.control("faults", {"report_error_rate": 0.5, "seed": 7})
        return [ads.report(token, ADVERTISERS[0][0], TODAY).status_code for _ in range(30)]

    run = statuses()
    assert run == statuses()  # the same seed, the same faults
    assert set(run) == {200, 500, 429}
    throttled = next(r for r in (ads.report(token, ADVERTISERS[0][0], TODAY) for _ in range(50))
                     if r.status_code == 429)
    assert throttled.headers["Retry-After"] == "1" and throttled.json()["code"] == 40100
    ads.control("faults", {"report_error_rate": 0, "token_error_count": 2, "error_statuses": [500]})
    refresh_token = ads.control("grant")["refresh_token"]
    failed = requests.post(f"{ads.base}/ads/open_api/oauth2/refresh_token/", timeout=10, json={
        "app_id": ADS_APP_ID, "secret": ADS_SECRET, "grant_type": "refresh_token",
        "refresh_token": refresh_token})
    assert failed.status_code == 500
    assert ads.oauth2({"grant_type": "refresh_token", "refresh_token": refresh_token},
                      auth=(ADS_APP_ID, ADS_SECRET)).status_code == 500
    assert ads.refresh(refresh_token)["code"] == 0  # nothing was rotated by the failed calls
    assert [a["outcome"] for a in ads.stats()["refresh_attempts"]] == ["500", "500", "ok"]
    bad = ads.http.post(f"{ads.base}/sandbox/ads/faults", json={"report_error_rate": 2}, timeout=10)
    assert bad.status_code == 400


def test_general_reset_forgets_the_ads_world(ads: Ads):
    grant = ads.control("grant")
    ads.control("faults", {"report_error_rate": 1})
    assert requests.post(f"{ads.base}/sandbox/reset", timeout=10).status_code == 200
    stats = ads.stats()
    assert (stats["report_calls"], stats["calls"], stats["faults"]["report_error_rate"]) == (0, [], 0.0)
    assert ads.report_code(grant["access_token"]) == 40105
    assert ads.refresh(grant["refresh_token"])["code"] == 40107
