"""No code path can reach Feishu or a token except through the gateway and the token manager.

Scans the product's source: every SDK API call (`client.<product>.vN…`) sits inside a
function handed to `Feishu.call`; only bot/feishu.py builds a lark client or puts a user token
into a request; only bot/tokens/store.py (the token store behind user_tokens.py and
provider_tokens.py) touches the stored grants or opens their ciphertext.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = [p for d in ("bot", "handlers", "jobs") for p in (ROOT / d).rglob("*.py")]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _sdk_call_sites(tree: ast.AST) -> list[ast.Attribute]:
    """Attribute chains like client.im.v1 (an SDK product version namespace)."""
    return [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in {"v1", "v2", "v3", "v4"}
            and isinstance(n.value, ast.Attribute)]


def _inside_gateway_call(tree: ast.AST) -> set[int]:
    """Node ids of everything inside a function passed to `<x>.feishu.call(...)` / `feishu.call(...)`."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "call":
            receiver = ast.unparse(node.func.value)
            if receiver.endswith("feishu"):
                for arg in node.args[1:]:
                    inside.update(id(n) for n in ast.walk(arg))
    return inside


def test_every_sdk_call_goes_through_the_gateway():
    offenders = []
    for path in PRODUCT:
        tree = ast.parse(path.read_text())
        allowed = _inside_gateway_call(tree)
        for site in _sdk_call_sites(tree):
            if id(site) not in allowed:
                offenders.append(f"{_rel(path)}:{site.lineno} {ast.unparse(site)}")
    assert offenders == []
    # and the scan does find the real call sites
    sites = [p for p in PRODUCT if _sdk_call_sites(ast.parse(p.read_text()))]
    assert {_rel(p) for p in sites} >= {"bot/im.py", "bot/tokens/login.py"}


def test_only_the_gateway_builds_clients_or_sets_user_tokens():
    for path in PRODUCT:
        source = path.read_text()
        if _rel(path) != "bot/feishu.py":
            assert "Client.builder()" not in source, _rel(path)
            assert ".user_access_token(" not in source, _rel(path)
            assert "enable_set_token" not in source, _rel(path)


def test_only_the_token_manager_reads_stored_grants():
    allowed = {"bot/tokens/store.py", "bot/models.py"}
    for path in PRODUCT:
        if _rel(path) in allowed:
            continue
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert "OAuthToken" not in names | imported, _rel(path)
        opened = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "open"
                  and "box" in ast.unparse(n.value)]
        # the export's browser session, Coze keys and SQL sources' URLs are sealed too, but are no grants
        sealers = ("bot/tokens/tenant_cache.py", "bot/export/auth.py", "bot/coze/keys.py",
                   "bot/pipelines/store.py")
        assert opened == [] or _rel(path) in sealers, _rel(path)


# Job functions, and whether they call Feishu. A new job must be added here, and if it calls
# Feishu, to tests/test_tokens.py::test_every_feishu_job_succeeds_with_expired_tokens.
JOBS_CALLING_FEISHU = {"process_events": True, "refresh_due_tokens": True, "deliver_alerts": True,
                       "sync_cache_source": True, "apply_cache_changes": True, "refresh_cache_schema": True,
                       "refresh_cache_formulas": True,
                       "sweep_receipts": False, "schedule_cache_syncs": False,
                       "download_export_file": True, "poll_export_messages": True, "plan_export": False,
                       "submit_export_window": False, "tick_exports": False,
                       # Coze sync: calls Coze, never Feishu
                       "dispatch_coze_outbox": False, "coze_manual_sync": False, "poll_coze_outbox": False,
                       "refresh_chat_cards": True,
                       # pipelines: a run reads and writes its bitable; the cron's tick only queues
                       "run_pipeline": True, "run_due_pipelines": False,
                       "apply_retention": False}


def test_the_expired_token_test_covers_every_job():
    found = {}
    for path in (ROOT / "jobs").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and ast.unparse(d.func) == "instrumented" for d in node.decorator_list
            ):
                found[node.name] = path.stem
    assert set(found) == set(JOBS_CALLING_FEISHU)
    covered = (ROOT / "tests" / "test_tokens.py").read_text()
    body = covered.split("def test_every_feishu_job_succeeds_with_expired_tokens", 1)[1].split("\ndef ", 1)[0]
    for job, calls_feishu in JOBS_CALLING_FEISHU.items():
        if calls_feishu:
            # process_events runs handlers through process_receipt; the others are called directly
            assert (job if job != "process_events" else "process_receipt") in body, job
