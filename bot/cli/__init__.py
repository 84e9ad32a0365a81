"""`feishu-bridge`, the command line: `main.py` is the group; one module per command group
(`ops`: config, processes, events; `db`: schema versions and backups; `auth`; `caches`: sources,
sync, cache; `coze`; `export`). Each command parses its options and calls into
`bot/<capability>`; helpers shared by all of them live in `common.py`."""

from __future__ import annotations


def run() -> None:
    """The `feishu-bridge` program (and `python -m bot.cli`): a short-lived process until the
    command says otherwise (see startup.py)."""
    from bot.cli import startup

    startup.short_lived()
    from bot.cli.main import main

    main()
