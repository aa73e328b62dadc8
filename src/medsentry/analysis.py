"""Analysis engines behind the scan pipeline: the one interface between events and engines.

An engine (inventory, detection, controls, ...) consumes the events the sensing side produced,
in order, batch by batch, the same way for a capture file, a replayed capture and a live
interface. It never imports `capture`, `flows` or `protocols`.

    class Analyzer(Protocol):
        name: str
        def feed(self, events: Sequence[Event]) -> None: ...
        def finish(self, store: Store, capture_id: str | None) -> dict[str, Any]: ...

`feed` sees every batch the store sees (flow records and protocol events). `finish` runs after
the capture's own transaction committed: the engine writes what it derived (devices, alerts,
findings, ...) to the store in its own transaction and returns a few counts for the summary.
A live session calls `finish` at each commit interval and at the end.

An engine may also have `close() -> list[str]`, called once when the command is done with it
(`close_analyzers`), even after an error: it saves what it keeps between runs, releases outside
resources (the detection engine drains its alert outputs) and returns warnings for the user
(alerts an output could not deliver).

Engines are registered below, one line each, in the order they run (later engines may read what
earlier ones stored, e.g. detection reads the inventory). `load_analyzers()` builds them.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from medsentry.events.base import Event

if TYPE_CHECKING:
    from medsentry.store import Store


@runtime_checkable
class Analyzer(Protocol):
    name: str

    def feed(self, events: Sequence[Event]) -> None: ...

    def finish(self, store: Store, capture_id: str | None) -> dict[str, Any]: ...


# Registration: (name, "module:factory"); the factory takes the open Store and returns an Analyzer.
_ANALYZERS: dict[str, str] = {}


def register(name: str, target: str) -> None:
    _ANALYZERS[name] = target


def analyzer_names() -> list[str]:
    return list(_ANALYZERS)


def load_analyzers(store: Store, names: Sequence[str] | None = None) -> list[Analyzer]:
    """The registered engines (or the named ones), in registration order, bound to `store`."""
    chosen = list(_ANALYZERS) if names is None else list(names)
    unknown = [n for n in chosen if n not in _ANALYZERS]
    if unknown:
        from medsentry.errors import ConfigError

        known = ", ".join(_ANALYZERS) or "none"
        raise ConfigError(f"unknown analysis engine {unknown[0]!r} (known: {known})")
    out: list[Analyzer] = []
    for name in _ANALYZERS:
        if name in chosen:
            module, _, attr = _ANALYZERS[name].partition(":")
            out.append(getattr(importlib.import_module(module), attr)(store))
    return out


def close_analyzers(analyzers: Sequence[Analyzer]) -> list[str]:
    """`close()` each engine that has one, every one even if another fails; their warnings.
    The first engine's exception, if any, is raised after all were closed."""
    warnings: list[str] = []
    error: BaseException | None = None
    for engine in analyzers:
        close = getattr(engine, "close", None)
        if close is None:
            continue
        try:
            warnings += close() or []
        except Exception as exc:  # the others still close; the first error is raised after
            error = error or exc
    if error is not None:
        raise error
    return warnings


# One line per engine, in the order they run.
register("inventory", "medsentry.inventory.engine:inventory_engine")
register("controls", "medsentry.controls.engine:controls_analyzer")
register("detect", "medsentry.detect.analyzer:detect_analyzer")
