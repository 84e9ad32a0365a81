"""`up`'s supervisor: children's lines prefixed on a terminal, passed through otherwise, none lost;
a child exiting once its restarts are used up stops the others."""

from __future__ import annotations

import io
import os
import sys

from bot.processes.supervisor import Supervisor, prefix_for
from tests import processes

# prints a few lines (stdout and stderr), then lives until SIGTERM and says goodbye
LIVES = """
import signal, sys, time
def bye(*_):
    print("bye", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("hello from stdout", flush=True)
print("hello from stderr", file=sys.stderr, flush=True)
while True:
    time.sleep(0.05)
"""
# many lines, the last one without a newline, then exits
DIES = "import sys\nfor i in range(5000): print(f'line {i}')\nsys.stdout.write('last words')\n"


def _env() -> dict[str, str]:
    # marked as this test's, so conftest stops anything the supervisor would leave behind
    return {**os.environ, processes.MARK: processes._owner}


def _run(pretty: bool) -> tuple[int, list[bytes]]:
    output = io.BytesIO()
    # no restarts: the child that exits stops everything (restarts: test_adversarial_processes)
    supervisor = Supervisor(output=output, pretty=pretty, grace_seconds=10, max_restarts=0)
    supervisor.add("lives-long", [sys.executable, "-c", LIVES], _env())
    supervisor.add("dies", [sys.executable, "-c", DIES], _env())
    code = supervisor.run()
    assert all(c.process.poll() is not None for c in supervisor.children)
    return code, output.getvalue().splitlines()


def test_on_a_terminal_each_line_carries_the_childs_coloured_name():
    code, lines = _run(pretty=True)
    assert code == 1  # a child exiting on its own stops everything, as a failure
    long, short = prefix_for("lives-long", 10, "36"), prefix_for("dies", 10, "33")
    assert long == b"\x1b[36mlives-long |\x1b[0m " and short == b"\x1b[33mdies       |\x1b[0m "
    assert {long + b"hello from stdout", long + b"hello from stderr", long + b"bye"} <= set(lines)
    mine = [line for line in lines if line.startswith(short)]
    assert mine == [short + f"line {i}".encode() for i in range(5000)] + [short + b"last words"]
    stopping = "✗ dies exited with code 0; stopping.".encode()
    assert lines.index(stopping) < lines.index(long + b"bye")  # what a child says as it stops


def test_otherwise_lines_pass_through_unchanged():
    code, lines = _run(pretty=False)
    assert code == 1
    assert [line for line in lines if line.startswith(b"line ")] == [
        f"line {i}".encode() for i in range(5000)]
    assert {b"hello from stdout", b"hello from stderr", b"last words", b"bye"} <= set(lines)
    assert not [line for line in lines if b"\x1b[" in line]


def test_echo_prints_whole_blocks():
    output = io.BytesIO()
    supervisor = Supervisor(output=output, pretty=True)
    supervisor.echo("✓ one\n  two")
    assert output.getvalue() == "✓ one\n  two\n".encode()
