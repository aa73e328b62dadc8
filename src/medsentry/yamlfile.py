"""YAML data files, parsed by libyaml when PyYAML was built with it.

`CSafeLoader` builds the same documents as `SafeLoader` (the same resolver and constructors, C
scanner and parser) several times faster; start-up reads a dozen data files. Errors are the same
`yaml.YAMLError` subclasses, with their marks.
"""

from __future__ import annotations

from typing import Any

import yaml

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str | bytes) -> Any:
    """`yaml.safe_load`, through libyaml when present."""
    return yaml.load(text, Loader=Loader)
