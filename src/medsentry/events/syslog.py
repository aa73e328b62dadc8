"""Device log events: one syslog message (RFC 5424 or RFC 3164) received or imported.

The free-text message never leaves the parser (it may name patients or staff): an event keeps
the header fields, the ids of the log patterns it matched (data/detect_log_patterns.yaml), a
keyed hash of a username a pattern captured, and the message length.
"""

from __future__ import annotations

import msgspec

from medsentry.events.base import Event


class SyslogMessage(Event, tag="syslog", frozen=True, kw_only=True):
    """`ts_ns`: the message's TIMESTAMP when it has one (RFC 5424 §6.2.3), else receive time."""

    source_ip: str | None = None  # the sender's address (None for a file import)
    transport: str = "udp"  # udp, tcp, file
    format: str = "rfc5424"  # rfc5424, rfc3164 (RFC 3164 §4.1), or "unknown" (no PRI)
    facility: int | None = None  # RFC 5424 §6.2.1
    severity: int | None = None  # 0 emergency ... 7 debug
    hostname: str | None = None
    app_name: str | None = None
    procid: str | None = None
    msgid: str | None = None
    sd_ids: list[str] = msgspec.field(default_factory=list)  # SD-IDs of STRUCTURED-DATA
    matches: list[str] = msgspec.field(default_factory=list)  # log pattern ids
    categories: list[str] = msgspec.field(default_factory=list)  # failed_login, config_change...
    user_hash: str | None = None  # keyed hash of the account a pattern named
    length: int = 0  # bytes of MSG
