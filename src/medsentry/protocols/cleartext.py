"""Credentials that cross the wire in clear: Telnet (RFC 854), FTP (RFC 959), POP3 (RFC 1939,
RFC 5034), IMAP (RFC 9051); SNMP v1/v2c communities (RFC 1157, RFC 3416) in `snmp.py`, on the
same `_Credentials` base.

Each dissector reports the FACT (protocol, mechanism, whether the server accepted it) with the
username reduced to a keyed hash; passwords are recognized and dropped, never kept. A session
that upgrades to TLS (AUTH TLS, STLS, STARTTLS) is no longer read.
"""

from __future__ import annotations

import base64
import binascii
import re

from medsentry.events.base import Event
from medsentry.events.credentials import CleartextCredentials
from medsentry.protocols.base import CLIENT_TO_SERVER, FlowContext, ParseError
from medsentry.protocols.registry import register_stream
from medsentry.protocols.streamkit import StreamDissector

MAX_LINE = 8192


class _Credentials(StreamDissector):
    """Shared: build and hold the credential fact until the server's verdict."""

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self.stopped = False
        self.pending: CleartextCredentials | None = None

    def _fact(
        self, ts_ns: int, mechanism: str, user: bytes | None, password: bool, **extra: bool
    ) -> CleartextCredentials:
        return CleartextCredentials(
            ts_ns=ts_ns,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            protocol=self.protocol,
            mechanism=mechanism,
            username_hash=self.ctx.phi_hash(user) if user is not None else None,
            password_sent=password,
            **extra,
        )

    def _verdict(self, accepted: bool | None) -> list[Event]:
        if self.pending is None:
            return []
        p, self.pending = self.pending, None
        return [
            CleartextCredentials(
                ts_ns=p.ts_ns,
                flow_id=p.flow_id,
                endpoints=p.endpoints,
                protocol=p.protocol,
                mechanism=p.mechanism,
                username_hash=p.username_hash,
                password_sent=p.password_sent,
                anonymous=p.anonymous,
                default_credential=p.default_credential,
                accepted=accepted,
            )
        ]

    def close(self, ts_ns: int) -> list[Event]:
        return self._verdict(None)


class _LineProtocol(_Credentials):
    """Text protocols with CRLF-terminated commands and replies."""

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self.bufs = (bytearray(), bytearray())

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        if self.stopped:
            return []
        buf = self.bufs[direction]
        buf += data
        out: list[Event] = []
        while not self.stopped:
            i = buf.find(b"\n")
            if i < 0:
                if len(buf) > MAX_LINE:
                    raise ParseError(f"{self.protocol} line longer than {MAX_LINE} bytes")
                break
            line = bytes(buf[:i]).rstrip(b"\r")
            del buf[: i + 1]
            if direction == CLIENT_TO_SERVER:
                out.extend(self.client_line(line, ts_ns))
            else:
                out.extend(self.server_line(line, ts_ns))
        return out

    def client_line(self, line: bytes, ts_ns: int) -> list[Event]:
        raise NotImplementedError

    def server_line(self, line: bytes, ts_ns: int) -> list[Event]:
        raise NotImplementedError


def _b64(token: bytes) -> bytes | None:
    try:
        return base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _sasl_plain(raw: bytes | None) -> bytes | None:
    """RFC 4616 §2: [authzid] NUL authcid NUL passwd; returns authcid."""
    if raw is None or raw.count(b"\0") != 2:
        return None
    return raw.split(b"\0")[1]


class FtpDissector(_LineProtocol):
    """RFC 959 §4.1.1 USER/PASS; RFC 4217 §4 AUTH TLS."""

    protocol = "ftp"

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self.user: bytes | None = None
        self.awaiting_pass_reply = False
        self.auth_tls = False

    def client_line(self, line: bytes, ts_ns: int) -> list[Event]:
        cmd, _, arg = line.partition(b" ")
        cmd = cmd.upper()
        if cmd == b"USER":
            self.user = arg.strip()
        elif cmd == b"PASS":
            out = self._verdict(None)
            anon = (self.user or b"").lower() in (b"anonymous", b"ftp")
            self.pending = self._fact(ts_ns, "user-pass", self.user, bool(arg), anonymous=anon)
            self.awaiting_pass_reply = True
            return out
        elif cmd == b"AUTH":
            self.auth_tls = True
        return []

    def server_line(self, line: bytes, ts_ns: int) -> list[Event]:
        code = line[:3]
        if not code.isdigit():
            return []  # a continuation line of a multi-line reply (RFC 959 §4.2)
        if self.auth_tls and code == b"234":
            self.stopped = True  # RFC 4217 §4: TLS negotiation follows
            return self._verdict(None)
        if self.awaiting_pass_reply and line[3:4] != b"-":
            self.awaiting_pass_reply = False
            return self._verdict(code in (b"230", b"202"))
        return []


class Pop3Dissector(_LineProtocol):
    """RFC 1939 §7 USER/PASS and APOP; RFC 5034 AUTH; RFC 2595 §4 STLS."""

    protocol = "pop3"

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self.user: bytes | None = None
        self.sasl: bytes | None = None  # mechanism awaiting client responses
        self.sasl_user: bytes | None = None
        self.awaiting = False
        self.stls = False

    def client_line(self, line: bytes, ts_ns: int) -> list[Event]:
        if self.sasl is not None:
            return self._sasl_step(line, ts_ns)
        cmd, _, arg = line.partition(b" ")
        cmd = cmd.upper()
        out: list[Event] = []
        if cmd == b"USER":
            self.user = arg.strip()
        elif cmd == b"PASS":
            out = self._verdict(None)
            self.pending = self._fact(ts_ns, "user-pass", self.user, bool(arg))
            self.awaiting = True
        elif cmd == b"APOP":
            name = arg.split(b" ")[0]
            out = self._verdict(None)
            self.pending = self._fact(ts_ns, "apop", name, False)  # an MD5 digest, not the secret
            self.awaiting = True
        elif cmd == b"AUTH":
            mech, _, initial = arg.partition(b" ")
            self.sasl = mech.upper()
            if initial:
                return self._sasl_step(initial, ts_ns)
        elif cmd == b"STLS":
            self.stls = True
        return out

    def _sasl_step(self, line: bytes, ts_ns: int) -> list[Event]:
        mech = self.sasl
        if line == b"*":  # RFC 5034 §4: the client cancels
            self.sasl = None
            return []
        if mech == b"PLAIN":
            self.sasl = None
            user = _sasl_plain(_b64(line))
            self.pending = self._fact(ts_ns, "auth-plain", user, True)
            self.awaiting = True
        elif mech == b"LOGIN":  # draft-murchison-sasl-login: username, then password
            if self.sasl_user is None:
                self.sasl_user = _b64(line) or b""
            else:
                self.sasl = None
                self.pending = self._fact(ts_ns, "auth-login", self.sasl_user, True)
                self.sasl_user = None
                self.awaiting = True
        else:
            self.sasl = None  # challenge-response mechanisms: no cleartext secret
        return []

    def server_line(self, line: bytes, ts_ns: int) -> list[Event]:
        if self.stls and line.startswith(b"+OK"):
            self.stopped = True
            return self._verdict(None)
        if self.awaiting and line[:1] in (b"+", b"-") and not line.startswith(b"+ "):
            self.awaiting = False
            return self._verdict(line.startswith(b"+OK"))
        return []


_IMAP_LOGIN = re.compile(rb'^(\S+) LOGIN (?:"((?:[^"\\]|\\.)*)"|\{(\d+)\+?\}|(\S+))(.*)$', re.I)
_IMAP_AUTH = re.compile(rb"^(\S+) AUTHENTICATE (\S+)(?: (\S+))?$", re.I)


class ImapDissector(_LineProtocol):
    """RFC 9051 §6.2.3 LOGIN, §6.2.2 AUTHENTICATE, §6.2.1 STARTTLS."""

    protocol = "imap"

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self.tag: bytes | None = None
        self.starttls_tag: bytes | None = None
        self.literal_user = 0  # LOGIN's username arrives as a literal of this size
        self.plain_tag: bytes | None = None

    def client_line(self, line: bytes, ts_ns: int) -> list[Event]:
        if self.literal_user:
            user = line[: self.literal_user]
            self.literal_user = 0
            self.pending = self._fact(ts_ns, "login", user, True)
            return []
        if self.plain_tag is not None:
            tag, self.plain_tag = self.plain_tag, None
            if line != b"*":
                self.pending = self._fact(ts_ns, "auth-plain", _sasl_plain(_b64(line)), True)
                self.tag = tag
            return []
        m = _IMAP_LOGIN.match(line)
        if m:
            out = self._verdict(None)
            self.tag = m.group(1)
            if m.group(3) is not None:
                self.literal_user = min(int(m.group(3)), MAX_LINE)
                return out
            user = m.group(2) if m.group(2) is not None else m.group(4)
            if m.group(2) is not None:
                user = re.sub(rb"\\(.)", rb"\1", user)
            self.pending = self._fact(ts_ns, "login", user, bool(m.group(5).strip()))
            return out
        m = _IMAP_AUTH.match(line)
        if m and m.group(2).upper() == b"PLAIN":
            if m.group(3):  # RFC 4959 SASL-IR initial response
                self.pending = self._fact(ts_ns, "auth-plain", _sasl_plain(_b64(m.group(3))), True)
                self.tag = m.group(1)
            else:
                self.plain_tag = m.group(1)
            return []
        parts = line.split(b" ")
        if len(parts) == 2 and parts[1].upper() == b"STARTTLS":
            self.starttls_tag = parts[0]
        return []

    def server_line(self, line: bytes, ts_ns: int) -> list[Event]:
        tag, _, rest = line.partition(b" ")
        status = rest.split(b" ", 1)[0].upper()
        if self.starttls_tag is not None and tag == self.starttls_tag and status == b"OK":
            self.stopped = True
            return self._verdict(None)
        if self.tag is not None and tag == self.tag and status in (b"OK", b"NO", b"BAD"):
            self.tag = None
            return self._verdict(status == b"OK")
        return []


# -- Telnet ----------------------------------------------------------------------------------

IAC, SB, SE = 255, 250, 240  # RFC 854 "TELNET COMMAND STRUCTURE"
WILL, WONT, DO, DONT = 251, 252, 253, 254
_LOGIN_PROMPT = re.compile(rb"(?:login|username|user name|user)\s*:\s*$", re.I)
_PASSWORD_PROMPT = re.compile(rb"(?:password|passcode|passwd)\s*:\s*$", re.I)
_LINE_END = re.compile(rb"[\r\n\x00]+")  # CR LF, CR NUL (RFC 854), or a bare LF
_MAX_TYPED_SCAN = 1024  # bytes of one typed line looked at (a name or password is short)
_LOGIN_FAILED = re.compile(rb"(?:login incorrect|incorrect|failed|denied|invalid)", re.I)


class _IacStripper:
    """Removes Telnet commands and option negotiation from one direction (RFC 854, RFC 855)."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = 0  # 0 data, 1 after IAC, 2 option byte, 3 in SB, 4 IAC in SB

    def strip(self, data: bytes) -> bytes:
        """Data bytes of `data`; Python steps per command byte, plain runs are copied whole."""
        if IAC not in data and self.state == 0:
            return data
        out = bytearray()
        st = self.state
        i, n = 0, len(data)
        while i < n:
            if st == 0 or st == 3:  # data, or inside SB: jump to the next IAC
                j = data.find(IAC, i)
                if j < 0:
                    if st == 0:
                        out += data[i:]
                    break
                if st == 0:
                    out += data[i:j]
                st = 1 if st == 0 else 4
                i = j + 1
                continue
            b = data[i]
            i += 1
            if st == 1:
                if b == IAC:
                    out.append(IAC)  # IAC IAC: a data byte 255
                    st = 0
                elif b in (WILL, WONT, DO, DONT):
                    st = 2
                elif b == SB:
                    st = 3
                else:
                    st = 0
            elif st == 2:
                st = 0
            else:  # st == 4: IAC inside SB
                st = 0 if b == SE else 3
        self.state = st
        return bytes(out)


class TelnetDissector(_Credentials):
    """Login and password typed after the server's prompts (the usual getty/login dialogue)."""

    protocol = "telnet"

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self.iac = (_IacStripper(), _IacStripper())
        self.screen = bytearray()  # the server's output since the client last ended a line
        self.field: str | None = None  # "user" or "password": what the client is typing
        self.typed = bytearray()
        self.user: bytes | None = None
        self.reported = 0

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        data = self.iac[direction].strip(data)
        out: list[Event] = []
        if direction != CLIENT_TO_SERVER:
            self.screen += data
            del self.screen[:-256]
            if self.pending is not None and _LOGIN_FAILED.search(self.screen):
                out += self._verdict(False)
            elif self.pending is not None and (
                re.search(rb"[$#%>]\s*$", self.screen) or b"Last login" in self.screen
            ):
                out += self._verdict(True)
            return out
        pos, n = 0, len(data)
        while pos < n:  # Python steps per typed line, not per byte
            if self.field is None:
                if _PASSWORD_PROMPT.search(self.screen):
                    self.field = "password"
                elif _LOGIN_PROMPT.search(self.screen):
                    self.field = "user"
                else:
                    break  # nothing asked for: the rest is not a credential
                self.typed.clear()
            m = _LINE_END.search(data, pos)
            end = n if m is None else m.start()
            for b in data[pos : min(end, pos + _MAX_TYPED_SCAN)]:
                if b in (0x08, 0x7F):  # erase character
                    if self.typed:
                        self.typed.pop()
                elif len(self.typed) < 256:
                    self.typed.append(b)
            if m is None:
                break
            if self.typed or self.field == "password":
                out += self._line_done(ts_ns)
            pos = m.end()
        return out

    def _line_done(self, ts_ns: int) -> list[Event]:
        out: list[Event] = []
        if self.field == "user":
            self.user = bytes(self.typed)
        elif self.field == "password" and self.reported < 16:
            out += self._verdict(None)
            self.pending = self._fact(ts_ns, "login", self.user, bool(self.typed))
            self.reported += 1
            self.user = None
        self.field = None
        self.typed.clear()
        self.screen.clear()
        return out


register_stream("ftp", FtpDissector)
register_stream("pop3", Pop3Dissector)
register_stream("imap", ImapDissector)
register_stream("telnet", TelnetDissector)
