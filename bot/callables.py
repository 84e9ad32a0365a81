"""Callables users name by dotted path (a Coze template's custom mapping, a pipeline's Python
source), resolved only from modules an operator allow-listed.

A path names code the bridge will run, so it must come from a module prefix in a setting
(COZE_MAPPING_MODULES, PIPELINE_MODULES) — never `os:system`. Both spellings are accepted:
`package.module:function` and `package.module.function`. Pure apart from the import in `load`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

# dotted identifiers, optionally `:attribute`: nothing a path could smuggle past the prefix check
PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$", re.ASCII)


def prefixes(setting: str) -> list[str]:
    """A comma-separated setting (`bot.coze.examples,coze_mappings`) as a list of prefixes."""
    return [p.strip() for p in setting.split(",") if p.strip()]


def split(path: str) -> tuple[str, str]:
    """(module, attribute) of `a.b:c` or `a.b.c`."""
    if ":" in path:
        module, _, attribute = path.partition(":")
    else:
        module, _, attribute = path.rpartition(".")
    return module, attribute


def is_allowed(path: str, allowed: list[str]) -> bool:
    """Whether the path is well formed and its module is one of the prefixes or inside one
    (`pipelines` allows `pipelines.ads`, not `pipelines_evil`)."""
    if not isinstance(path, str) or not PATH.match(path):
        return False
    module, attribute = split(path)
    if not module or not attribute:
        return False
    return any(module == p or module.startswith(p + ".") for p in allowed if p)


def load(path: str) -> Callable[..., Any]:
    """Import the module and return the callable; ImportError/AttributeError/TypeError say why not.
    Callers check `is_allowed` first (and again at run time: settings can change)."""
    module_name, attribute = split(path)
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise TypeError(f"{path} is not callable")
    return function


def problem(path: str, allowed: list[str], setting_name: str) -> str | None:
    """Why the path cannot be used (outside the allow-list, or not loadable), or None."""
    if not is_allowed(path, allowed):
        return f"callable {path!r} is outside {setting_name}"
    try:
        load(path)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        return f"callable {path!r} cannot be loaded: {exc}"
    return None
