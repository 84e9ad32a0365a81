"""RQ jobs: small functions taking plain arguments; dependencies come from `bot.services.current()`."""
