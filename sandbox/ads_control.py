"""`/sandbox/ads/*`: how tests drive the ads platform's emulator (issue 17) — grants, expiry,
revocation, refresh-token lifetimes, faults, the call log and the report's truth."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from sandbox import ads_state as ads
from sandbox.guard import state
from sandbox.products.ads import parse_day, rows_for
from sandbox.seed_ads import ADVERTISERS, days

bp = Blueprint("sandbox_ads_control", __name__, url_prefix="/sandbox/ads")

MAX_REPORT_DAYS = 1000


def _body() -> dict:
    body = request.get_json(force=True, silent=True)
    return body if isinstance(body, dict) else {}


def _seconds(body: dict, key: str, default: int | None = None) -> int | None:
    value = body.get(key, default)
    return None if value is None else int(value)


@bp.post("/grant")
def grant():
    """A fresh grant, as if the user authorised the app in the platform's console:
    `{"refresh_expires_in"?: s, "expires_in"?: s}`."""
    body = _body()
    try:
        expires_in = _seconds(body, "expires_in", ads.ACCESS_LIFETIME)
        refresh_expires_in = _seconds(body, "refresh_expires_in", ads.REFRESH_LIFETIME)
    except (TypeError, ValueError):
        return jsonify(error="expires_in / refresh_expires_in must be whole seconds"), 400
    return jsonify(state().ads.grant(expires_in, refresh_expires_in))


@bp.post("/expire")
def expire():
    """Every access token issued so far is expired (the data endpoints answer 40102)."""
    return jsonify(expired=state().ads.expire_access())


@bp.post("/revoke")
def revoke():
    """Every refresh token (40107) and access token (40105) is revoked."""
    return jsonify(revoked=state().ads.revoke())


@bp.post("/refresh-expires-in")
def refresh_expires_in():
    """`{"seconds": n}`: every live refresh token now expires n seconds from now."""
    try:
        seconds = int(_body()["seconds"])
    except (KeyError, TypeError, ValueError):
        return jsonify(error="'seconds' (whole seconds) is required"), 400
    return jsonify(updated=state().ads.set_refresh_expires_in(seconds))


@bp.post("/faults")
def faults():
    """`{"report_error_rate"?, "report_error_count"?, "token_error_rate"?, "token_error_count"?,
    "error_statuses"?: [500, 429], "seed"?}`."""
    world = state().ads
    try:
        world.set_faults(_body())
    except (TypeError, ValueError) as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(faults=world.stats()["faults"])


@bp.post("/today")
def today():
    """`{"date": "YYYY-MM-DD"}` fixes the platform's "today" (later dates have no data); null
    goes back to the real date in UTC+8."""
    world = state().ads
    text = _body().get("date")
    day = None if text is None else parse_day(str(text))
    if text is not None and day is None:
        return jsonify(error="'date' must be YYYY-MM-DD or null"), 400
    with world.lock:
        world.today_override = day
    return jsonify(today=world.today().isoformat())


@bp.post("/reset")
def reset():
    """Only the ads platform's world, as `POST /sandbox/reset` also does."""
    st = state()
    st.ads = st.ads.fresh()
    return jsonify(ok=True)


@bp.get("/stats")
def stats():
    return jsonify(state().ads.stats())


@bp.get("/report")
def report():
    """The truth: every row of every advertiser from `from` to `to` (inclusive), in date then
    advertiser order — what the daily report endpoint answers, call by call — and per day the
    accounts with data and the row count."""
    world = state().ads
    first, last = parse_day(request.args.get("from")), parse_day(request.args.get("to"))
    if first is None or last is None or last < first:
        return jsonify(error="'from' and 'to' (YYYY-MM-DD, from <= to) are required"), 400
    if (last - first).days >= MAX_REPORT_DAYS:
        return jsonify(error=f"at most {MAX_REPORT_DAYS} days"), 400
    rows, summary = [], []
    for day in days(first, last):
        per_account = [rows_for(world, aid, day) for aid, _, _ in ADVERTISERS]
        summary.append({"date": day.isoformat(), "accounts": sum(1 for r in per_account if r),
                        "rows": sum(len(r) for r in per_account)})
        rows += [row for account in per_account for row in account]
    return jsonify(list=rows, total=len(rows), days=summary, advertisers=len(ADVERTISERS),
                   today=world.today().isoformat())

