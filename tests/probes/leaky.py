"""Not part of the suite: tests/test_cleanup.py runs one of these in a pytest of its own to show
that the secrets scan runs at session end, whatever was selected."""

import logging

from sandbox.state import SANDBOX_APP_SECRET


def test_logs_a_secret():
    logging.getLogger("probe").warning("the app secret is %s", SANDBOX_APP_SECRET)


def test_logs_nothing_secret():
    logging.getLogger("probe").warning("nothing to see")
