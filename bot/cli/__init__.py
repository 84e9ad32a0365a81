"""`feishu-bridge`, the command line: `main.py` is the group; one module per command group
(`ops`: config, db, processes, events; `auth`; `caches`: sources, sync, cache; `coze`; `export`).
Each command parses its options and calls into `bot/<capability>`; helpers shared by all of them
live in `common.py`."""
