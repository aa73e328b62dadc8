"""Ctrl-C that Python drops or wraps still interrupts (cli/interrupt.py)."""

from __future__ import annotations

import subprocess
import sys

_SWALLOWED = """
import gc, os, signal, sys, weakref
from medsentry.cli import interrupt
interrupt.install()

class Thing:
    pass

def callback(ref):  # CPython prints 'Exception ignored' for what a weakref callback raises
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(1000):  # the handler runs between bytecodes, inside this callback
        pass

t = Thing()
r = weakref.ref(t, callback)
del t
gc.collect()
print("ran on", interrupt.requested(), flush=True)
try:
    interrupt.check()
except KeyboardInterrupt:
    print("stopped at the checkpoint", flush=True)
"""


def test_a_ctrl_c_python_drops_is_raised_at_the_next_checkpoint() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SWALLOWED], capture_output=True, text=True, timeout=60
    )
    assert "Exception ignored" in out.stderr and "KeyboardInterrupt" in out.stderr
    assert out.stdout.splitlines() == ["ran on True", "stopped at the checkpoint"]


_WRAPPED = """
import signal, os
from medsentry.cli import main, register
import click

@click.command("wrapped")
def wrapped():
    class Field:
        def __set_name__(self, owner, name):
            raise KeyboardInterrupt  # as a Ctrl-C arriving here would

    class Library:  # Python 3.11 wraps it: RuntimeError('Error calling __set_name__ ...')
        f = Field()

main.add_command(wrapped)
main(["wrapped"], prog_name="medsentry")
"""


def test_a_ctrl_c_python_wraps_exits_130_not_as_an_internal_error() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPED], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 130 and "internal error" not in out.stderr, out.stderr
