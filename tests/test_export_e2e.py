"""The contract export end to end: real gunicorn, Redis, RQ workers, Chromium and the sandbox."""

from __future__ import annotations

import json
from datetime import date

import httpx
import pytest

from bot.db import init_schema
from bot.services import build_services
from sandbox.seed_contract import COLUMNS
from tests.conftest import make_settings
from tests.export_helpers import cli, export_env, store_auth, table_rows, truth, workbook_rows
from tests.oauth_helpers import authorize
from tests.stack import BridgeStack

pytestmark = pytest.mark.slow


@pytest.fixture
def export_stack(tmp_path, redis_url, sandbox):
    base_url, state = sandbox
    database_url = f"sqlite:///{tmp_path / 'bridge.db'}"
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        feishu_base_url=base_url,
        var_dir=tmp_path / "var",
    )
    services = build_services(settings)
    init_schema(services.engine)
    authorize(services)
    stack = BridgeStack(
        tmp_path, database_url, redis_url, base_url, workers=3, extra_env=export_env(base_url)
    )
    stack.start()
    state.sender.config.webhook_url = f"{stack.base_url}/webhook/event"
    try:
        yield stack, services, state, base_url
    finally:
        stack.stop()
        services.close()


def _in_range(state, first: date, last: date) -> dict[str, tuple]:
    low, high = first.isoformat(), f"{last.isoformat()} 23:59:59"
    return {rid: values for rid, values in truth(state).items() if low <= values[-1] <= high}


def test_small_range_with_the_over_cap_day(export_stack):
    stack, services, state, base_url = export_stack
    env = stack.env()
    store_auth(env, base_url)
    done = cli(env, "export", "run", "--from", "2024-06-01", "--to", "2024-07-31", "--json", timeout=300)
    status = json.loads(done.stdout)
    assert status["status"] == "done", status
    merged = json.loads(cli(env, "export", "merge", "--json").stdout)
    expected = _in_range(state, date(2024, 6, 1), date(2024, 7, 31))
    assert merged["ok"] and merged["totals"]["records"] == len(expected)
    assert table_rows(services) == expected


FAULTS = {
    "server_error": 0.10,
    "rate_limit": 0.05,
    "lose_message": 0.05,
    "duplicate_message": 0.05,
    "jitter_seconds": 1.5,
    "deny_download": 0.03,
    "auto_scan": True,
}


@pytest.mark.timeout(900)
def test_run_with_faults_is_exact(export_stack):
    """A year with the over-cap day, every fault knob on; some downloads go through the web
    messenger in headless Chromium. Workbook and table equal the sandbox exactly. (The full
    80,000-record run is bench/export.py's.)"""
    stack, services, state, base_url = export_stack
    env = stack.env()
    store_auth(env, base_url)
    httpx.post(f"{base_url}/sandbox/contract/faults", json=FAULTS).raise_for_status()
    cli(env, "export", "login", "--headless", "--timeout", "30")
    status = json.loads(
        cli(env, "export", "run", "--from", "2024-01-01", "--to", "2024-12-31", "--json", timeout=900).stdout
    )
    assert status["status"] == "done" and not status["problems"], status
    report = json.loads(cli(env, "export", "merge", "--json", check=False).stdout)
    expected = _in_range(state, date(2024, 1, 1), date(2024, 12, 31))
    assert report["ok"], report
    assert report["totals"]["records"] == len(expected) and report["spot_check"]["mismatches"] == []
    # the seed's acceptance item 5: the final Excel's fields and data, checked against the source
    workbook = next((services.settings.effective_archive_dir).glob("*_merged.xlsx"))
    header, rows, count = workbook_rows(workbook)
    assert header == list(COLUMNS)
    assert count == len(expected) and rows == expected
    assert table_rows(services) == expected
    verified = json.loads(cli(env, "export", "verify", "--json").stdout)
    assert verified["ok"], verified
    with state.contract.lock:
        outcomes = [e.get("outcome") for e in state.contract.exports]
        denied = [f for f in state.contract.files.values() if f.denied]
    from sqlalchemy import select

    from bot.models import ExportFile

    with services.sessions() as session:
        via = list(session.scalars(select(ExportFile.downloaded_via)))
    assert "lost" in outcomes and "duplicated" in outcomes and denied
    assert "browser" in via, via
    print(
        f"\nexport calls {status['calls']} (floor {-(-len(expected) // 1000)}), "
        f"lost {outcomes.count('lost')}, "
        f"duplicated {outcomes.count('duplicated')}, browser downloads {via.count('browser')}"
    )
