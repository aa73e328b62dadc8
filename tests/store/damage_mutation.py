"""Mutation campaign: a damaged database under the commands analysts run, for as long as asked.

    python tests/store/damage_mutation.py --seconds 600 --seed 1 --mode bytes
    python tests/store/damage_mutation.py --seconds 600 --seed 1 --mode values

Scans the demo hospital into SQLite, then again and again copies the database, damages it and
runs one command in process. `bytes`: one to eight bytes of the file changed (pages, records,
the schema). `values`: one to three stored values replaced with what a damaged record or
another program leaves (NULL, text in a number column, a cut JSON value, bytes). A run passes
when it ends with an answer (0) or one clear error (2); an internal error (1) or a traceback
fails it. Prints the count and each distinct failure. The suite's property tests of the same
damage are in test_store_damage.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

COMMANDS = [
    ["devices"],
    ["devices", "--format", "json"],
    ["device", "10.10.0.1"],
    ["findings", "list"],
    ["risk"],
    ["vulns"],
    ["flows"],
    ["alerts"],
    ["inventory", "export", "-o", "WORK/e.csv"],
    ["inventory", "reconcile"],
    ["scan", "SMALL", "-q"],
    ["report", "--out", "WORK/out", "--formats", "json,stix"],
    ["policy", "recommend", "--format", "nftables"],
]
VALUES = [None, "", "x", 0, -1, 2**62, 1.5, "{", "[]", "{}", '{"a":1}', "null", b"\x00\xff"]


def damage_bytes(db: Path, rnd: random.Random) -> None:
    b = bytearray(db.read_bytes())
    for _ in range(rnd.randint(1, 8)):
        b[rnd.randrange(100, len(b))] = rnd.randrange(256)
    db.write_bytes(bytes(b))


def damage_values(db: Path, rnd: random.Random, columns: dict[str, list[str]]) -> None:
    con = sqlite3.connect(db)
    for _ in range(rnd.randint(1, 3)):
        table = rnd.choice(list(columns))
        col = rnd.choice(columns[table])
        rowid, old = con.execute(
            f'SELECT rowid, "{col}" FROM "{table}" ORDER BY random() LIMIT 1'
        ).fetchone()
        choices = list(VALUES)
        if isinstance(old, str) and old:
            k = rnd.randrange(len(old))
            choices += [old[:k], old[:k] + chr(rnd.randrange(32, 127)) + old[k + 1 :]]
        with_value = rnd.choice(choices)
        with contextlib.suppress(sqlite3.Error):  # a constraint refused it: the next damage
            con.execute(f'UPDATE "{table}" SET "{col}" = ? WHERE rowid = ?', (with_value, rowid))
    con.commit()
    con.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", choices=["bytes", "values"], default="values")
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="store-damage-"))
    os.environ["MEDSENTRY_HOME"] = str(root / "base")
    from medsentry.cli import main as cli
    from medsentry.demo.hospital import build

    pcap = root / "demo.pcap"
    build(pcap, seed=0)
    small = root / "small.pcap"  # a rescan with new traffic: the write paths too
    build(small, seed=1)
    base_db = root / "base" / "medsentry.db"
    base_db.parent.mkdir()
    res = CliRunner().invoke(cli, ["scan", str(pcap), "--db", f"sqlite:///{base_db}", "-q"])
    assert res.exit_code == 0, res.output
    con = sqlite3.connect(base_db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    columns = {
        t: [r[1] for r in con.execute(f'PRAGMA table_info("{t}")')]
        for t in tables
        if con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
    }
    con.close()
    runs, failures = 0, {}
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        work = Path(tempfile.mkdtemp(dir=root))
        shutil.copytree(root / "base", work / "home")
        db = work / "home" / "medsentry.db"
        if args.mode == "bytes":
            damage_bytes(db, rnd)
        else:
            damage_values(db, rnd, columns)
        cmd = [
            a.replace("WORK", str(work)).replace("SMALL", str(small)) for a in rnd.choice(COMMANDS)
        ]
        env = {"MEDSENTRY_HOME": str(work / "home"), "MEDSENTRY_DEBUG": ""}
        res = CliRunner().invoke(cli, [*cmd, "--db", f"sqlite:///{db}"], env=env)
        runs += 1
        said = res.output or ""
        crashed = res.exception is not None and not isinstance(res.exception, SystemExit)
        if crashed or res.exit_code not in (0, 2) or "internal error" in said:
            key = (cmd[0], said[:120])
            failures.setdefault(key, said[-600:])
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    print(f"{runs:,} runs ({args.mode}), {len(failures)} distinct failures")
    for key, said in failures.items():
        print("==", key)
        print(said)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
