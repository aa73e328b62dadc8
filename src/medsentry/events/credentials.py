"""Credentials that passed in clear: the fact, never the secret.

The username is reduced to a keyed hash (`FlowContext.phi_hash`); the password is never kept.
SNMP communities are hashed the same way; `default_credential` flags well-known defaults
("public", "private"), which are not secrets.
"""

from __future__ import annotations

from medsentry.events.base import Endpoints, Event


class CleartextCredentials(Event, tag="cleartext_credentials", frozen=True, kw_only=True):
    flow_id: str
    endpoints: Endpoints
    protocol: str  # http, ftp, telnet, pop3, imap, snmp, mqtt
    mechanism: str  # basic, user-pass, login, apop, auth-plain, community, connect
    username_hash: str | None = None
    password_sent: bool = False  # a password (or equivalent secret) crossed the wire in clear
    anonymous: bool = False  # FTP "anonymous"/"ftp" login
    default_credential: bool = False  # a well-known default such as SNMP "public"
    accepted: bool | None = None  # the server's verdict when seen
