"""Mutation campaign: damaged ledger files through every `audit` command, for as long as asked.

    python tests/ledger/ledger_mutation.py --seconds 600 --seed 1

Builds a ledger (entries, two signed checkpoints), then again and again copies it, damages one
to three of its files (bytes changed, cut, appended, zeroed, duplicated) and runs one command in
process. A run passes when it ends with an answer (0), a FAILED verdict (`verify`, 1) or one
`medsentry: error:` line (2). Prints the count and each distinct failure with its traceback.
The suite runs the same property with hypothesis (test_ledger_cli_mutation.py).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from click.testing import CliRunner

FILES = ["entries.bin", "index.bin", "hashes.bin", "checkpoints.bin"]
COMMANDS = [
    ["audit", "verify"],
    ["audit", "log"],
    ["audit", "prove", "3"],
    ["audit", "prove", "30"],
    ["audit", "consistency", "5", "20"],
    ["audit", "checkpoint"],
    ["audit", "export-tiles", "TILES"],
    ["audit", "vkey"],
]


def damage(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    op = rnd.choice(["flip", "truncate", "append", "zero", "duplicate"])
    i = rnd.randrange(len(b) + 1)
    n = rnd.randint(1, 64)
    if op == "flip" and b:
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
    elif op == "truncate":
        del b[i:]
    elif op == "append":
        b += bytes(rnd.randrange(256) for _ in range(n))
    elif op == "zero":
        b[i : i + n] = bytes(len(b[i : i + n]))
    elif op == "duplicate":
        b[i:i] = b[i : i + n]
    return bytes(b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="ledger-mutation-"))
    os.environ["MEDSENTRY_HOME"] = str(root / "base")
    from medsentry.cli import main as cli
    from medsentry.ledger import Ledger
    from medsentry.ledger.log import default_directory

    with Ledger(default_directory()) as lg:
        lg.append_many([("alert.raised", {"alert": i, "score": i / 4}) for i in range(12)])
        lg.checkpoint()
        lg.append_many([("finding.opened", {"finding": i}) for i in range(30)])
        lg.checkpoint()
    runs, failures = 0, {}
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        work = Path(tempfile.mkdtemp(dir=root))
        shutil.copytree(root / "base", work / "home")
        for name in rnd.sample(FILES, rnd.choice([1, 1, 2, 3])):
            f = work / "home" / "ledger" / name
            f.write_bytes(damage(f.read_bytes(), rnd))
        cmd = [a.replace("TILES", str(work / "tiles")) for a in rnd.choice(COMMANDS)]
        env = {"MEDSENTRY_HOME": str(work / "home"), "MEDSENTRY_DEBUG": "1"}
        res = CliRunner().invoke(cli, cmd, env=env)
        runs += 1
        verdict = cmd[1] == "verify" and res.exit_code == 1 and res.stdout.startswith("FAILED")
        crashed = res.exception is not None and not isinstance(res.exception, SystemExit)
        if crashed or not (res.exit_code in (0, 2) or verdict):
            key = (cmd[1], type(res.exception).__name__, res.exit_code)
            if key not in failures:
                failures[key] = "".join(traceback.format_exception(res.exception))[-2000:]
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    print(f"{runs:,} runs, {len(failures)} distinct failures")
    for key, tb in failures.items():
        print("==", key)
        print(tb)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
