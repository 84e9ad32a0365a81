"""`python -m bot.cli …`: how `up` and the tests start the bridge's processes."""

from bot.cli import run

run()
