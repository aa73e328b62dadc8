"""Parsed YAML documents kept on disk by the hash of their text: the next start-up reads the
document back (marshal, as Python's own .pyc files) instead of parsing it again.

A default scan reads some thirty data files; parsing them took 0.09 s of its start-up, reading
them back takes 2 ms. The key is the BLAKE2b hash of the text itself (and of the parser's
version), so an edited file is simply a new entry: nothing can be stale. Each entry carries the
hash of its payload; an unreadable, damaged or foreign entry is a miss, and the text is parsed
as if there were no cache. A document marshal cannot hold (a YAML timestamp) is not kept.
Nothing here ever raises: a read-only or full disk means parsing every time, as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import sys
from pathlib import Path
from typing import Any

from medsentry import paths

_MAGIC = b"msyc1\n"
_DIGEST = 32  # bytes of BLAKE2b
_FORMAT = f"{sys.version_info[0]}.{sys.version_info[1]} marshal {marshal.version}"
MISS: Any = object()


def key(text: str | bytes, salt: str) -> str | None:
    """The entry's name for `text` parsed by the parser `salt` names; None: not cacheable."""
    try:
        raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    except UnicodeError:
        return None
    h = hashlib.blake2b(digest_size=20, person=b"medsentry-yaml")
    h.update(f"{salt}\0{_FORMAT}\0".encode())
    h.update(b"s" if isinstance(text, str) else b"b")  # str and bytes are parsed differently
    h.update(raw)
    return h.hexdigest()


def _path(name: str) -> Path:
    return paths.cache_dir() / "yaml" / f"{name}.marshal"


def get(name: str) -> Any:
    """The document kept under `name`, a new copy each time; MISS when there is none."""
    try:
        data = _path(name).read_bytes()
    except OSError:
        return MISS
    head = len(_MAGIC) + _DIGEST
    payload = data[head:]
    if data[: len(_MAGIC)] != _MAGIC or data[len(_MAGIC) : head] != _sum(payload):
        return MISS
    try:
        return marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return MISS


def put(name: str, doc: Any) -> None:
    """Keep `doc` under `name` (atomically: a reader sees the whole entry or none)."""
    try:
        payload = marshal.dumps(doc)
    except ValueError:  # a type marshal does not hold (datetime): parsed every time
        return
    path = _path(name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            tmp.write_bytes(_MAGIC + _sum(payload) + payload)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _sum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_DIGEST).digest()
