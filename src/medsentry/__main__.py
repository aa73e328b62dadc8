"""`python -m medsentry ...`: the `medsentry` command, without its console script on PATH."""

from medsentry.cli import main

main(prog_name="medsentry")
