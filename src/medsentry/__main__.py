"""`python -m medsentry ...`: the `medsentry` command, without its console script on PATH."""

from medsentry.entry import run

run()
