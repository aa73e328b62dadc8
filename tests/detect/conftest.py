"""Detection tests: real captures (tcpdump on loopback, real stacks), real databases."""

from __future__ import annotations

import sys
from pathlib import Path

_PROTO = Path(__file__).resolve().parents[1] / "protocols"
for sub in ("dicom", "hl7", "net"):
    if str(_PROTO / sub) not in sys.path:
        sys.path.insert(0, str(_PROTO / sub))
