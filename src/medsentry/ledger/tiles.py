"""Export the ledger as a C2SP tlog-tiles tree, so standard tile clients can read and prove it.

c2sp.org/tlog-tiles: hash tiles `tile/<L>/<N>` hold 256 consecutive hashes of tree level 8·L;
entry bundles `tile/entries/<N>` hold 256 entries, each a big-endian uint16 length + data; a
rightmost incomplete tile is `<N>.p/<W>` with its W hashes/entries; `N` is written in
zero-padded 3-digit groups, all but the last prefixed `x` (1234067 -> x001/x234/067);
`checkpoint` is the signed note. Full tiles never change, so re-exports skip them.
"""

from __future__ import annotations

import os
from pathlib import Path

from medsentry.errors import InputError
from medsentry.ledger.log import Ledger

TILE_WIDTH = 256  # tlog-tiles: tile height 8
MAX_BUNDLE_ENTRY = 0xFFFF  # tlog-tiles: entries are uint16 length-prefixed


def tile_path(level: str, n: int, width: int = TILE_WIDTH) -> Path:
    """tlog-tiles path of tile N at `level` ('0', '1', ... or 'entries')."""
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        parts.insert(0, f"x{n % 1000:03d}")
        n //= 1000
    if width < TILE_WIDTH:
        parts[-1] += ".p"
        parts.append(str(width))
    return Path("tile", level, *parts)


def _write(path: Path, data: bytes, overwrite: bool) -> bool:
    if path.exists() and not overwrite:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def export_tiles(led: Ledger, out: Path, note: bytes, size: int) -> int:
    """Write the tiles of tree `size` and the signed `note` for it into `out`; files written."""
    if size > led.size:
        raise InputError(f"tree size {size} is beyond the ledger's {led.size} entries")
    written = 0
    # hash tiles: level L holds tree level 8L; tile N covers its hashes [256N, 256N + 256)
    level = 0
    while (count := size >> (8 * level)) > 0:
        for n in range((count + TILE_WIDTH - 1) // TILE_WIDTH):
            width = min(TILE_WIDTH, count - n * TILE_WIDTH)
            hashes = b"".join(
                led.stored_hash(8 * level, i) for i in range(n * TILE_WIDTH, n * TILE_WIDTH + width)
            )
            path = tile_path(str(level), n, width)
            written += _write(out / path, hashes, overwrite=False)
        level += 1
    # entry bundles
    for n in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, size - n * TILE_WIDTH)
        path = out / tile_path("entries", n, width)
        if path.exists():
            continue
        chunks = []
        for seq in range(n * TILE_WIDTH, n * TILE_WIDTH + width):
            data = led.entry_bytes(seq)
            if len(data) > MAX_BUNDLE_ENTRY:
                raise InputError(f"entry {seq} is {len(data)} bytes; tile bundles hold <= 65535")
            chunks.append(len(data).to_bytes(2, "big") + data)
        written += _write(path, b"".join(chunks), overwrite=False)
    written += _write(out / "checkpoint", note, overwrite=True)
    return written
