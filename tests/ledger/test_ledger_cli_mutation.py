"""Damaged ledger files through the `audit` commands: whatever the bytes, each command ends
with its answer, a one-line error (exit 2) or, for `verify`, a FAILED report (exit 1); never
an internal error. (An index offset past 2**63 once ended `audit log` in an OverflowError.)"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry import paths
from medsentry.cli import main
from medsentry.ledger import Ledger
from medsentry.ledger.log import CHECKPOINTS, ENTRIES, HASHES, INDEX, default_directory

FILES = [ENTRIES, INDEX, HASHES, CHECKPOINTS]
COMMANDS = [
    ["audit", "verify"],
    ["audit", "log"],
    ["audit", "prove", "3"],
    ["audit", "consistency", "5", "20"],
    ["audit", "checkpoint"],
    ["audit", "export-tiles", "TILES"],
    ["audit", "vkey"],
]

# one mutation of one file: (kind, position as a fraction of the file, bytes)
MUTATION = st.tuples(
    st.sampled_from(["flip", "truncate", "append", "zero", "duplicate"]),
    st.floats(0, 1, allow_nan=False),
    st.binary(min_size=1, max_size=16),
)


def _mutate(data: bytes, kind: str, where: float, blob: bytes) -> bytes:
    b = bytearray(data)
    i = min(len(b), int(where * len(b)))
    if kind == "flip" and b:
        i = min(i, len(b) - 1)
        b[i : i + len(blob)] = blob[: len(b) - i]
    elif kind == "truncate":
        del b[i:]
    elif kind == "append":
        b += blob
    elif kind == "zero":
        b[i : i + len(blob)] = bytes(len(b[i : i + len(blob)]))
    elif kind == "duplicate":
        b[i:i] = b[i : i + len(blob)]
    return bytes(b)


def _base() -> Path:
    """A ledger of 30 entries with two signed checkpoints, in this test's home."""
    with Ledger(default_directory()) as lg:
        lg.append_many([("alert.raised", {"alert": i, "score": i / 4}) for i in range(12)])
        lg.checkpoint()
        lg.append_many([("finding.opened", {"finding": i}) for i in range(18)])
        lg.checkpoint()
    return paths.data_dir()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    command=st.sampled_from(COMMANDS),
)
def test_damaged_ledger_files_never_make_an_internal_error(data: st.DataObject, command):
    base = paths.data_dir() if (default_directory() / ENTRIES).exists() else _base()
    files = data.draw(st.lists(st.sampled_from(FILES), min_size=1, max_size=3, unique=True))
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(base, home)
        for name in files:
            kind, where, blob = data.draw(MUTATION, label=name)
            f = home / "ledger" / name
            f.write_bytes(_mutate(f.read_bytes(), kind, where, blob))
        args = [a.replace("TILES", str(Path(tmp) / "tiles")) for a in command]
        env = {"MEDSENTRY_HOME": str(home), "MEDSENTRY_DEBUG": ""}
        res = CliRunner().invoke(main, args, env=env)
        said = res.stdout + res.stderr
        assert "internal error" not in said, said
        assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)
        if res.exit_code == 1:  # only verify's verdict uses 1
            assert command[1] == "verify" and res.stdout.startswith("FAILED"), said
        else:
            assert res.exit_code in (0, 2), (res.exit_code, said)
            if res.exit_code == 2:
                lines = res.stderr.strip().splitlines()  # recovery's warnings, then the error
                errors = [x for x in lines if x.startswith("medsentry: error: ")]
                assert len(errors) == 1 and lines[-1] == errors[0], said
