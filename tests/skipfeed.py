"""Feeding a dissector its streams in chunks, with or without `skippable`/`skip` (the flow
layer's way of passing bytes the dissector only counts by length)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from medsentry.events import encode_json


def feed_chunks(
    dissector: Any, streams: Iterable[tuple[int, bytes]], chunk: int, use_skip: bool
) -> tuple[list[bytes], int]:
    """Every event as JSON (close included) and the number of bytes skipped."""
    out: list[bytes] = []
    skipped = 0
    for i, (direction, stream) in enumerate(streams):
        for pos in range(0, len(stream), chunk):
            piece = stream[pos : pos + chunk]
            if use_skip and dissector.skippable(direction) >= len(piece):
                dissector.skip(direction, len(piece))
                skipped += len(piece)
                continue
            out += [encode_json(e) for e in dissector.feed(direction, piece, i)]
    out += [encode_json(e) for e in dissector.close(99)]
    return out, skipped
