"""The architecture holds: one-way layers, no import cycle, every job and handler registered by a
name that imports, thin jobs, small modules (docs/architecture.md describes the rules)."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import grimp
from rq.utils import import_attribute

import jobs
from bot.intake.routes import EVENT_HANDLERS
from bot.processes.cron import SCHEDULE
from bot.queue import Jobs
from tests import processes

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "jobs", "sandbox")


def test_layers_contract_is_kept():
    """`lint-imports` (import-linter, configured in pyproject.toml): bot/ never imports jobs/ or
    handlers/, handlers/ never imports jobs/. In a process of its own: it reconfigures logging."""
    done = processes.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "--no-logo"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert done.returncode == 0 and "1 kept, 0 broken" in done.stdout, done.stdout


def test_no_import_cycle_anywhere():
    """Module-level, counting imports inside functions and under TYPE_CHECKING too."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.append(" -> ".join((module, *back)))
    assert cycles == []


def _job_functions() -> dict[str, object]:
    """Every instrumented function in jobs/, by the dotted name RQ would import."""
    found = {}
    for path in sorted((ROOT / "jobs").glob("*.py")):
        module = f"jobs.{path.stem}"
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and ast.unparse(d.func) == "instrumented" for d in node.decorator_list
            ):
                found[f"{module}.{node.name}"] = node
    return found


def test_every_job_is_registered_by_a_name_that_imports():
    registered = Jobs.names()
    assert len(registered) == len(set(registered))
    assert set(registered) == set(_job_functions()), "bot.queue.Jobs and jobs/ disagree"
    for name in registered:
        assert callable(import_attribute(name)), name
    assert {entry.job for entry in SCHEDULE} <= set(registered)


def test_every_event_handler_is_named_by_a_path_that_imports():
    for event_type, name in EVENT_HANDLERS.items():
        handler = import_attribute(name)
        assert list(inspect.signature(handler).parameters) == ["services", "event_doc"], event_type


def test_jobs_are_thin_adapters():
    long = {name: node.end_lineno - node.lineno + 1 for name, node in _job_functions().items()
            if node.end_lineno - node.lineno + 1 > 30}
    assert long == {}
    # and nothing in jobs/ but job functions and their instrumentation
    for path in (ROOT / "jobs").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                assert f"jobs.{path.stem}.{node.name}" in Jobs.names() or path.stem == "timing", node.name
    assert jobs.__doc__


def test_bot_modules_stay_small():
    big = {}
    for path in (ROOT / "bot").rglob("*.py"):
        lines = len(path.read_text().splitlines())
        if lines > 450 and path.name != "models.py":
            big[str(path.relative_to(ROOT))] = lines
    assert big == {}
