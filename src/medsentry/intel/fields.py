"""Optional JSON fields checked with their path, shared by the document readers (NVD, OSV,
OpenVEX): absent or null is empty; any other type is the reader's own InputError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medsentry.errors import InputError

ErrorAt = Callable[[str, str], InputError]  # (JSON path, message) -> the reader's error


def optional_array(parent: dict[str, Any], key: str, path: str, error: ErrorAt) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise error(f"{path}.{key}", "must be an array")
    return value


def optional_object(parent: dict[str, Any], key: str, path: str, error: ErrorAt) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise error(f"{path}.{key}", "must be an object")
    return value
