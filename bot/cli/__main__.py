"""`python -m bot.cli …`: how `up` and the tests start the bridge's processes."""

from bot.cli.main import main

main()
