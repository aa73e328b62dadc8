"""What a command's failure must look like on stderr (brief: one clear line, exit code 2)."""

from __future__ import annotations

import subprocess


def one_error_line(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """The single `medsentry: error:` line of a run that exited 2, holding each of `fragments`."""
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("medsentry: error: "), err
    for frag in fragments:
        assert frag in line, err
    return line
