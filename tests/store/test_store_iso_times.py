"""`ns_to_iso` (a per-minute cached prefix) writes exactly what strftime writes."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from medsentry.store.queries import ns_to_iso, parse_time

_MAX_NS = 253402300799 * 1_000_000_000 + 999_999_999  # 9999-12-31T23:59:59.999999999Z


def _strftime(ns: int) -> str:
    sec, rem = divmod(ns, 1_000_000_000)
    dt = datetime.fromtimestamp(sec, UTC).replace(microsecond=rem // 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@given(st.integers(min_value=-62135596800 * 1_000_000_000, max_value=_MAX_NS))
def test_same_text_as_strftime(ns: int) -> None:
    assert ns_to_iso(ns) == _strftime(ns)


def test_edges() -> None:
    assert ns_to_iso(None) is None
    assert ns_to_iso(0) == "1970-01-01T00:00:00.000000Z"
    assert ns_to_iso(-1) == "1969-12-31T23:59:59.999999Z"  # floor, as datetime does
    assert ns_to_iso(1_704_067_199_999_999_999) == "2023-12-31T23:59:59.999999Z"
    assert ns_to_iso(1_704_067_200_000_001_000) == "2024-01-01T00:00:00.000001Z"
    assert ns_to_iso(_MAX_NS) == "9999-12-31T23:59:59.999999Z"


def test_round_trip_to_the_microsecond() -> None:
    ns = 1_767_261_600_042_119_000
    assert parse_time(ns_to_iso(ns), "--since") == ns
