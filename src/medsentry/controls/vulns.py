"""Vulnerability matches for devices, through the intel engine's public API when present.

Returns None when no vulnerability intelligence was imported (reports then say so, and no KEV
finding is made); never invents matches.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medsentry.inventory.model import Device

if TYPE_CHECKING:
    from medsentry.store import Store


def intel_available(store: Store) -> bool:
    try:
        tables = importlib.import_module("medsentry.intel.tables")
    except ImportError:
        return False
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with store.engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(tables.intel_advisories)).scalar()
    except SQLAlchemyError:
        return False
    return bool(n)


def device_matches(store: Store, devices: Sequence[Device]) -> list[Any] | None:
    """`medsentry.intel.match.match_devices` over the devices; None without intelligence."""
    if not devices or not intel_available(store):
        return None
    try:
        match = importlib.import_module("medsentry.intel.match")
    except ImportError:
        return None
    return list(match.match_devices(store, devices))
