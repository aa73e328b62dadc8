"""Small tools shared by the text and binary dissectors: a base class, a bounded buffer,
and a loader for the knowledge files the dissectors read (validated at import time)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources
from typing import Any, ClassVar

import yaml

from medsentry import yamlfile
from medsentry.errors import ConfigError
from medsentry.events.base import Event
from medsentry.protocols.base import FlowContext, ParseError


class StreamDissector:
    """Base of a dissector: holds the flow context; subclasses override what they need."""

    protocol: ClassVar[str] = ""
    whole_stream: ClassVar[bool] = True

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        raise NotImplementedError

    def gap(self, direction: int, length: int, ts_ns: int) -> list[Event]:
        return []

    def close(self, ts_ns: int) -> list[Event]:
        return []


class Buffer:
    """A byte buffer that refuses to grow past `limit` (raises ParseError)."""

    __slots__ = ("data", "limit", "what")

    def __init__(self, limit: int, what: str) -> None:
        self.data = bytearray()
        self.limit = limit
        self.what = what

    def append(self, chunk: bytes) -> None:
        if len(self.data) + len(chunk) > self.limit:
            raise ParseError(f"{self.what} longer than {self.limit} bytes")
        self.data += chunk

    def consume(self, n: int) -> bytes:
        out = bytes(self.data[:n])
        del self.data[:n]
        return out

    def clear(self) -> None:
        self.data.clear()

    def __len__(self) -> int:
        return len(self.data)


def text(raw: bytes, limit: int = 256) -> str:
    """Bytes from the wire as printable text: UTF-8 where valid, control characters dropped,
    at most `limit` characters (identity strings, never free-form payloads)."""
    s = raw[: limit * 4].decode("utf-8", "replace")
    if s.isprintable():  # the usual case: nothing to drop
        return s[:limit] if len(s) > limit else s
    return "".join(ch for ch in s if ch.isprintable())[:limit]


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


@functools.cache
def knowledge(name: str, validate: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """Load `medsentry/data/<name>` (YAML); it must name its `source`."""
    try:
        raw = resources.files("medsentry.data").joinpath(name).read_text("utf-8")
        doc = yamlfile.load(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"knowledge file {name} cannot be read: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("source"), str):
        raise ConfigError(f"knowledge file {name} must be a mapping with a 'source'")
    if validate is not None:
        try:
            validate(doc)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"knowledge file {name} is invalid: {exc}") from exc
    return doc
