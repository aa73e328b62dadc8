"""Who did it: the actor named in audit-ledger entries for actions taken from this process."""

from __future__ import annotations

import getpass
import os


def cli_actor() -> str:
    """`cli:<login>` (MEDSENTRY_ACTOR overrides, e.g. for a service account or an API user)."""
    override = os.environ.get("MEDSENTRY_ACTOR", "").strip()
    if override:
        return override
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"cli:uid{os.getuid()}"
