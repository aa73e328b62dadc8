"""PS3.6 names the dissector reports, read from pydicom's generated dictionary modules.

pydicom keeps the PS3.6 data dictionary (Table 6-1) and UID registry (Annex A) in two generated
modules of plain dict literals, `_dicom_dict.py` and `_uid_dict.py`. Importing them through
`pydicom` runs the package's `__init__` first (its data elements, configuration and pixel
handlers: about a quarter of a second), so the first DICOM association of a scan would pay for
all of it; the two modules are loaded from the installed package on their own instead (a few
milliseconds), and the package's own copies are used when it is already imported.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def _data_module(name: str) -> ModuleType:
    """pydicom's `name` module without importing the pydicom package (same file, same dict)."""
    loaded = sys.modules.get(f"pydicom.{name}")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("pydicom")  # a top-level spec: nothing is imported
    locations = spec.submodule_search_locations if spec is not None else None
    path = Path(locations[0], f"{name}.py") if locations else None
    if path is None or not path.is_file():
        return importlib.import_module(f"pydicom.{name}")  # another layout: the usual way
    own = importlib.util.spec_from_file_location(f"medsentry._pydicom{name}", path)
    if own is None or own.loader is None:
        return importlib.import_module(f"pydicom.{name}")
    module = importlib.util.module_from_spec(own)
    own.loader.exec_module(module)  # bytecode from pydicom's own __pycache__ when present
    return module


@functools.cache
def _uids() -> dict[str, tuple[Any, ...]]:
    return _data_module("_uid_dict").UID_dictionary


def uid_name(uid: str) -> str | None:
    """The UID's name in PS3.6 Annex A, None when it is not registered."""
    entry = _uids().get(uid)
    return entry[0] if entry is not None else None


@functools.cache
def sequence_tags() -> frozenset[int]:
    """Tags whose VR is SQ in PS3.6 Table 6-1."""
    entries = _data_module("_dicom_dict").DicomDictionary
    return frozenset(tag for tag, entry in entries.items() if entry[0] == "SQ")
