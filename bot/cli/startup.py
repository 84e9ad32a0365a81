"""How a `feishu-bridge` process treats Python's garbage collector.

Most commands are short processes that import a lot (SQLAlchemy's ORM, pydantic) and exit.
The cyclic collector, run every 700 new objects, then spends a third of their CPU walking
objects that live until exit (bench/cli.py). So it runs rarely while a command starts, and
whatever is left at exit is frozen, which the interpreter's final collection skips. Commands
that run until stopped put Python's defaults back.
"""

from __future__ import annotations

import atexit
import gc

_DEFAULT_THRESHOLD = gc.get_threshold()  # read before `short_lived` changes it


def short_lived() -> None:
    # A young-generation pass per million new objects: start-up (about that many) sees one or
    # two, and a command that does run for long still collects its cycles.
    gc.set_threshold(1_000_000, 50, 100)
    atexit.register(gc.freeze)


def long_running() -> None:
    gc.set_threshold(*_DEFAULT_THRESHOLD)
