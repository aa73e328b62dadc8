"""The installation's ledger keys: a log key that signs checkpoints, a clock key that cosigns them.

Both are Ed25519 seeds made on first use by `medsentry.paths.secret_key` (mode 0600 in
`<data dir>/keys/`; a key file that group or others can read is refused: ConfigError, exit 2).
The log's origin (and the log key's name) is derived from the log public key, so it is unique to
the installation and never needs to be configured.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from medsentry import paths
from medsentry.errors import ConfigError
from medsentry.ledger.note import SIG_COSIGNATURE_V1, SIG_ED25519, Signer, Vkey

LOG_KEY_FILE = "ledger-log-ed25519.key"
CLOCK_KEY_FILE = "ledger-clock-ed25519.key"


@dataclass(frozen=True)
class LedgerKeys:
    log: Signer
    clock: Signer
    created: tuple[str, ...]  # key files made by this call (to be recorded as config changes)

    @property
    def origin(self) -> str:
        return self.log.name

    @property
    def vkeys(self) -> tuple[Vkey, Vkey]:
        return self.log.vkey, self.clock.vkey


def _seed(name: str, created: list[str]) -> bytes:
    path = paths.data_dir() / "keys" / name
    existed = path.exists()
    seed = paths.secret_key(name, 32)
    if len(seed) != 32:
        raise ConfigError(f"key file {path} holds {len(seed)} bytes; an Ed25519 seed is 32")
    if not existed:
        created.append(name)
    return seed


def origin_for(public_key: bytes) -> str:
    """tlog-checkpoint origin: a schema-less URL unique to this installation's log key."""
    return "ledger.medsentry.local/" + hashlib.sha256(public_key).hexdigest()[:16]


def load_keys() -> LedgerKeys:
    created: list[str] = []
    log_seed = _seed(LOG_KEY_FILE, created)
    clock_seed = _seed(CLOCK_KEY_FILE, created)
    probe = Signer.from_seed("probe", log_seed)
    origin = origin_for(probe.vkey.public_key)
    log = Signer.from_seed(origin, log_seed, SIG_ED25519)
    clock = Signer.from_seed(origin + "/clock", clock_seed, SIG_COSIGNATURE_V1)
    return LedgerKeys(log, clock, tuple(created))


def existing_keys() -> LedgerKeys | None:
    """The installation's keys if they were ever made (verification never creates keys)."""
    keys = paths.data_dir() / "keys"
    if not (keys / LOG_KEY_FILE).exists() or not (keys / CLOCK_KEY_FILE).exists():
        return None
    return load_keys()
