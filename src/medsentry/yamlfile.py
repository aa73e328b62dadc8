"""YAML data files, parsed by libyaml when PyYAML was built with it.

`CSafeLoader` builds the same documents as `SafeLoader` (the same resolver and constructors, C
scanner and parser) several times faster; start-up reads a dozen data files. Errors are the same
`yaml.YAMLError` subclasses, with their marks. A text parsed before is read back from the
cache (medsentry.yamlcache) instead.
"""

from __future__ import annotations

from typing import Any

import yaml

from medsentry import yamlcache

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


MAX_DEPTH = 200  # collections nested deeper are refused (ours nest 6 deep)
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


# what parses a text: a change to any of these makes new cache entries
_PARSER = f"{yaml.__version__} {Loader.__name__} {MAX_DEPTH}"


def load(text: str | bytes) -> Any:
    """`yaml.safe_load`, through libyaml when present; a text parsed before comes from the
    cache (a new copy of the same document)."""
    name = yamlcache.key(text, _PARSER)
    if name is not None:
        doc = yamlcache.get(name)
        if doc is not yamlcache.MISS:
            return doc
    doc = _parse(text)
    if name is not None:
        yamlcache.put(name, doc)
    return doc


def _parse(text: str | bytes) -> Any:
    """`yaml.safe_load`, through libyaml when present.

    Nesting is checked first, on libyaml's event stream (its parser keeps an explicit stack):
    the composer recurses, in C, and tens of thousands of nested "[" overflow the C stack
    (a segmentation fault, not an exception); the pure-Python one raises RecursionError.
    """
    depth = 0
    for event in yaml.parse(text, Loader=Loader):
        if isinstance(event, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(  # marked: callers name the line
                    problem=f"collections nested more than {MAX_DEPTH} deep",
                    problem_mark=event.start_mark,
                )
        elif isinstance(event, _CLOSE):
            depth -= 1
    return yaml.load(text, Loader=Loader)
