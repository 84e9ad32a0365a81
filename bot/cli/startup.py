"""How a `feishu-bridge` process treats Python's garbage collector.

Most commands are short processes that import a lot (SQLAlchemy's ORM, pydantic) and exit.
The cyclic collector, run every 700 new objects, walks objects that live until exit over and
over. So a young-generation pass runs once per million new objects (the older generations keep
their ratios, so a long command still collects its cycles), and whatever is left at exit is
frozen, which the interpreter's final collection skips: together about a quarter of a
command's CPU (docs/benchmarks.md). Commands that run until stopped put Python's defaults back.
"""

from __future__ import annotations

import atexit
import gc

_DEFAULT_THRESHOLD = gc.get_threshold()  # read before `short_lived` changes it


def short_lived() -> None:
    gc.set_threshold(1_000_000, 10, 10)
    atexit.register(gc.freeze)


def long_running() -> None:
    gc.set_threshold(*_DEFAULT_THRESHOLD)
