"""RFC 8785 JSON Canonicalization Scheme (JCS): the one byte form of every ledger entry.

The reference is the `rfc8785` package (Trail of Bits). It costs ~16 µs per entry, too slow for
50,000 durable appends per second, so the common case takes a fast path that produces the same
bytes: msgspec's compact encoder with sorted keys, after a walk that (a) checks every value is a
JSON type JCS accepts, (b) writes floats in ECMAScript form (RFC 8785 §3.2.2.3) as raw JSON, and
(c) hands anything with a non-ASCII object key to `rfc8785` (JCS sorts keys by UTF-16 code units,
RFC 8785 §3.2.3, which differs from code-point order only outside ASCII). A value with no float
and only ASCII keys (every ledger entry the engines write) skips the copy: a read-only walk
(`_plain`) vouches for it. A property test checks both paths give the reference's bytes on
arbitrary JSON values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import msgspec
import rfc8785

from medsentry.errors import InputError

_MAX_SAFE_INT = 2**53 - 1  # RFC 8785 §3.2.2.3 / I-JSON (RFC 7493 §2.2): integers must fit a double
_encoder = msgspec.json.Encoder(order="sorted")


class _NeedsReference(Exception):
    """The fast path cannot vouch for this value; use the reference implementation."""


@lru_cache(maxsize=4096)
def es_number(x: float) -> str:
    """ECMAScript Number::toString (ECMA-262 §7.1.12.1), as RFC 8785 §3.2.2.3 requires."""
    if math.isnan(x) or math.isinf(x):
        raise InputError(f"{x!r} is not a JSON number (RFC 8785 §3.2.2.3)")
    if x == 0:
        return "0"  # -0 serialises as 0
    sign = "-" if x < 0 else ""
    r = repr(abs(x))  # shortest round-trip digits, as ECMAScript requires
    mant, _, exp = r.partition("e")
    int_part, _, frac = mant.partition(".")
    all_digits = int_part + frac
    digits = all_digits.lstrip("0")
    # value = 0.digits * 10**n
    n = len(int_part) - (len(all_digits) - len(digits)) + (int(exp) if exp else 0)
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        s = digits + "0" * (n - k)
    elif 0 < n <= 21:
        s = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        s = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        s = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-")
        s += str(abs(e))
    return sign + s


def _scalar_ok(t: type, value: Any) -> bool:
    """True for a str/bool/None/in-range int that goes to the encoder as it is."""
    if t is str or t is bool or value is None:
        return True
    if t is int:
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return True
        raise InputError(f"integer {value} is outside the I-JSON range (RFC 8785 §3.2.2.3)")
    return False


def _plain(value: Any) -> bool:
    """True when the encoder may write the value as it is: nested dicts with ASCII string keys,
    lists/tuples, and str/bool/None/in-range int leaves (no float to rewrite, no key order that
    JCS sorts differently). Anything else, errors included, goes through `_prepare`."""
    t = type(value)
    if t is dict:
        for k in value:
            if type(k) is not str or not k.isascii():
                return False
        return _all_plain(value.values())
    if t is list or t is tuple:
        return _all_plain(value)
    if t is str or value is None or t is bool:
        return True
    return t is int and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def _all_plain(values: Iterable[Any]) -> bool:
    for v in values:  # leaves inline: most values are strings and small ints
        tv = type(v)
        if tv is str or v is None or tv is bool:
            continue
        if tv is int:
            if not -_MAX_SAFE_INT <= v <= _MAX_SAFE_INT:
                return False
        elif not _plain(v):
            return False
    return True


def _prepare(value: Any) -> Any:
    """Check a value for the fast path; floats become raw ECMAScript numbers."""
    t = type(value)
    if t is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise InputError(f"object key {k!r} is not a string")
            if not k.isascii():
                raise _NeedsReference
            out[k] = v if _scalar_ok(type(v), v) else _prepare(v)
        return out
    if t is list or t is tuple:
        return [v if _scalar_ok(type(v), v) else _prepare(v) for v in value]
    if _scalar_ok(t, value):
        return value
    if t is float:
        if value.is_integer() and abs(value) <= _MAX_SAFE_INT:
            return int(value)
        return msgspec.Raw(es_number(value).encode())
    raise InputError(f"a {t.__name__} cannot be written as canonical JSON")


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value (dict/list/str/int/float/bool/None)."""
    try:
        if _plain(value):  # the common case (ledger entries): encoded as it is, no copy
            return _encoder.encode(value)
        return _encoder.encode(_prepare(value))
    except _NeedsReference:
        pass
    except UnicodeEncodeError as exc:  # lone surrogate
        raise InputError(f"string is not valid Unicode: {exc.reason}") from None
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise InputError(f"not canonicalisable JSON: {exc}") from None
