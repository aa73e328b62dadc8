"""tlog-tiles export read back by an independent tile client (tlog-scales' TilesReader)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from tlog_scales.backend import LocalBackend
from tlog_scales.reader import TilesReader
from tlog_scales.signing import Vkey as TsVkey

from medsentry.cli import main
from medsentry.ledger import Ledger
from medsentry.ledger.keys import load_keys
from medsentry.ledger.log import default_directory
from medsentry.ledger.tiles import export_tiles, tile_path


def test_tile_paths_follow_spec():
    assert tile_path("0", 1234067) == Path("tile/0/x001/x234/067")
    assert tile_path("entries", 5, 17) == Path("tile/entries/005.p/17")
    assert tile_path("1", 0) == Path("tile/1/000")


@pytest.mark.parametrize("size", [1, 255, 256, 257, 70_000])
def test_tile_client_reads_exported_log(tmp_path: Path, size: int):
    load_keys()  # made up front: key-creation entries would shift the sizes below
    with Ledger(tmp_path / "l") as lg:
        lg.append_many([("inventory.device_added", {"device": i}) for i in range(size)])
        note = str(lg.checkpoint()).encode()
        out = tmp_path / "tiles"
        export_tiles(lg, out, note, size)
        reader = TilesReader(LocalBackend(out))
        cp = reader.get_checkpoint()
        cp.verify(TsVkey.from_string(str(lg.keys().log.vkey)))
        assert cp.size == size and reader.calculate_root_hash() == lg.root(size)
        for i in {0, size // 3, size - 1}:
            assert reader.get_entry(i) == lg.entry_bytes(i)
            assert (
                reader.get_inclusion_proof(i, size).node_hashes == lg.inclusion_proof(i, size).path
            )
        for old in {1, size // 2, size - 1}:
            if 0 < old < size:
                theirs = reader.get_consistency_proof(old, size).node_hashes
                assert theirs == lg.consistency_proof(old, size).path
        # a later export only adds files; full tiles are immutable
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
        lg.append_many([("inventory.device_added", {"device": -i}) for i in range(300)])
        note2 = str(lg.checkpoint()).encode()
        export_tiles(lg, out, note2, lg.size - 1)
        for p, mtime in before.items():
            if ".p" not in str(p) and p.name != "checkpoint":
                assert p.stat().st_mtime_ns == mtime
        reader = TilesReader(LocalBackend(out))
        assert reader.get_checkpoint().size == lg.size - 1
        assert reader.calculate_root_hash() == lg.root(lg.size - 1)


def test_export_tiles_command(tmp_path: Path):
    with Ledger(default_directory()) as lg:
        lg.append_many([("alert.raised", {"n": i}) for i in range(300)])
    res = CliRunner().invoke(main, ["audit", "export-tiles", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    reader = TilesReader(LocalBackend(tmp_path / "t"))
    cp = reader.get_checkpoint()
    with Ledger(default_directory()) as lg:
        assert reader.calculate_root_hash() == lg.root(cp.size)
