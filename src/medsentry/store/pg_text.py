"""psycopg dumpers for `str` that send NUL (U+0000) as U+FFFD: PostgreSQL's text types cannot
store NUL (PostgreSQL docs §8.3), and psycopg refuses a statement or COPY row holding one."""

from __future__ import annotations

from typing import Any

from psycopg.types.string import StrBinaryDumper, StrDumperUnknown

_NUL = "\x00"
_REPLACEMENT = "\ufffd"  # Unicode §23.8: a character that cannot be represented


def _no_nul(obj: str) -> str:
    return obj.replace(_NUL, _REPLACEMENT) if _NUL in obj else obj


class NulSafeStrDumper(StrDumperUnknown):
    """Text format: psycopg's default for `str` (oid unknown: the server infers the type)."""

    def dump(self, obj: str) -> Any:
        return super().dump(_no_nul(obj))


class NulSafeStrBinaryDumper(StrBinaryDumper):
    """Binary format (`%b` parameters, binary COPY)."""

    def dump(self, obj: str) -> Any:
        return super().dump(_no_nul(obj))


def register_nul_safe_text(dbapi_conn: Any) -> None:
    """On one psycopg connection (SQLAlchemy's "connect" event hands over the DBAPI one)."""
    adapters = dbapi_conn.adapters
    adapters.register_dumper(str, NulSafeStrDumper)
    adapters.register_dumper(str, NulSafeStrBinaryDumper)
