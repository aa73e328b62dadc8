"""Where an installation keeps its files: data directory, default database, secret keys.

`MEDSENTRY_HOME` overrides the platform's user data directory (tests set it to a temp dir), and
holds the cache too (`cache/`) when set.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import platformdirs

from medsentry.errors import ConfigError


def data_dir() -> Path:
    home = os.environ.get("MEDSENTRY_HOME")
    path = Path(home) if home else Path(platformdirs.user_data_dir("medsentry", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Where derived files that can be rebuilt at any time are kept (not created here)."""
    home = os.environ.get("MEDSENTRY_HOME")
    if home:
        return Path(home) / "cache"
    return Path(platformdirs.user_cache_dir("medsentry", appauthor=False))


def default_db_url() -> str:
    return f"sqlite:///{data_dir() / 'medsentry.db'}"


def secret_key(name: str, size: int = 32) -> bytes:
    """Read (or create on first use) a per-installation secret, kept with mode 0600.

    Refuses a key file that group or others can read: a PHI-hashing or signing key that leaked
    would undo what it protects.
    """
    keys = data_dir() / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    path = keys / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(size))
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"key file {path} has mode {mode:o}; it must be 0600 (chmod 600 {path})")
    return path.read_bytes()


def phi_key() -> bytes:
    """The HMAC key dissectors use to reduce identifying values to keyed hashes."""
    return secret_key("phi-hmac.key")
