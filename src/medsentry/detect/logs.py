"""Device logs as a second input: syslog (RFC 5424, RFC 3164) from a port or a file -> events.

- `parse_syslog(data, ...)` reads one message: RFC 5424 (§6 SYSLOG-MSG), RFC 3164 (§4.1 PRI,
  HEADER, MSG) or a syslog file line without PRI ("Nov 23 10:00:00 host app[1]: msg").
- The message text is matched against `data/detect_log_patterns.yaml` here and dropped: the
  event keeps pattern ids, categories, a keyed hash of a captured username and the length.
- `SyslogReceiver` listens on UDP (RFC 5426: one message per datagram) and TCP (RFC 6587:
  octet counting, or LF-terminated non-transparent framing).
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import ipaddress
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from medsentry.errors import ConfigError, InputError
from medsentry.events.syslog import SyslogMessage

DATA = Path(__file__).resolve().parent.parent / "data" / "detect_log_patterns.yaml"
MAX_MESSAGE = 64 * 1024  # RFC 5425 §4.3.1 receivers should accept 8 KiB; we accept more

_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}
# RFC 3164 §4.1.2 TIMESTAMP "Mmm dd hh:mm:ss" (day space-padded)
_RFC3164_TS = re.compile(r"([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) ", re.ASCII)
_INT64_NS = 1 << 63  # event times are signed 64-bit nanoseconds (the store's BIGINT)
# RFC 3164 §4.1.3 MSG: TAG (at most 32 alphanumerics; in practice also _ . - /) ended by "["
# (the process id, digits) or ":"
_TAG = re.compile(r"([A-Za-z0-9][A-Za-z0-9_./-]{0,31})(?:\[(\d{1,10})\])?:(?: |$)")
# RFC 3164 §4.1.2 HOSTNAME: a host name (RFC 1123 labels) or an IP address
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
# RFC 5424 §6.2.7 MSGID, §6.3.2 SD-ID (name or name@enterprise number): printed only when
# token-like, a name without a run of 5 digits (a record number's shape), else keyed
_TOKEN = re.compile(r"^(?![^@]*\d{5})[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}(?:@\d{1,10})?$")


class LogPattern(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    category: str
    regex: str
    example: str
    source: str
    flags: list[str] = []


class _PatternFile(msgspec.Struct, kw_only=True):
    source: str
    categories: list[str]
    patterns: list[LogPattern]


class Patterns:
    """Compiled log patterns, validated against their own examples."""

    def __init__(self, path: Path | None = None) -> None:
        import yaml

        from medsentry import yamlfile

        src = path or DATA
        try:
            doc = yamlfile.load(src.read_bytes())  # bad UTF-8: a YAMLError
            pf = msgspec.convert(doc, _PatternFile)
        except OSError as exc:
            raise ConfigError(f"{src}: cannot read: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{src}: not valid YAML") from exc
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{src}: {exc}") from exc
        self.categories = tuple(pf.categories)
        self.compiled: list[tuple[LogPattern, re.Pattern[str]]] = []
        for p in pf.patterns:
            where = f"{src}: pattern {p.id!r}"
            if p.category not in self.categories:
                raise ConfigError(f"{where}: unknown category {p.category!r}")
            flags = 0
            for f in p.flags:
                if f not in ("IGNORECASE", "MULTILINE", "DOTALL"):
                    raise ConfigError(f"{where}: unknown flag {f!r}")
                flags |= getattr(re, f)
            try:
                rx = re.compile(p.regex, flags)
            except re.error as exc:
                raise ConfigError(f"{where}: bad regex: {exc}") from exc
            if not rx.search(p.example):
                raise ConfigError(f"{where}: does not match its own example")
            if not p.source.strip():
                raise ConfigError(f"{where}: needs a source")
            self.compiled.append((p, rx))

    def match(self, msg: str) -> tuple[list[str], list[str], str | None]:
        """(pattern ids, categories, captured username or None)."""
        ids: list[str] = []
        cats: list[str] = []
        user: str | None = None
        for p, rx in self.compiled:
            m = rx.search(msg)
            if m is None:
                continue
            ids.append(p.id)
            if p.category not in cats:
                cats.append(p.category)
            if user is None:
                gd = m.groupdict()
                user = gd.get("user") or gd.get("user2")
        return ids, cats, user.strip("'\"") if user else None


_patterns: Patterns | None = None


def default_patterns() -> Patterns:
    global _patterns
    if _patterns is None:
        _patterns = Patterns()
    return _patterns


def _keyed(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:16]


def _is_hostname(token: str, after: str) -> bool:
    """RFC 3164 §4.1.2: whether the word after TIMESTAMP is the HOSTNAME. An IP address or a
    dotted name is; a single-label name only when a TAG follows it (§4.1.3), since a line
    without HOSTNAME has the message's own words there."""
    try:
        ipaddress.ip_address(token)
        return True
    except ValueError:
        pass
    if not _HOSTNAME.match(token):
        return False
    return "." in token.rstrip(".") or _TAG.match(after) is not None


def _token(key: bytes, value: str | None) -> str | None:
    """MSGID or SD-ID as printed: token-like as sent, else a keyed hash (`#...`)."""
    if value is None or _TOKEN.match(value):
        return value
    return f"#{_keyed(key, value)}"


def _nil(s: str) -> str | None:
    return None if s == "-" else s


def _rfc3339_ns(ts: str) -> int | None:
    """RFC 5424 §6.2.3 TIMESTAMP (RFC 3339) -> ns since the epoch; None for NILVALUE/invalid."""
    if ts == "-":
        return None
    try:
        dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    ns = int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
    return ns if 0 <= ns < _INT64_NS else None  # years 1970-2262: else the receive time


def _structured_data(rest: str) -> tuple[list[str], str]:
    """RFC 5424 §6.3 STRUCTURED-DATA: the SD-IDs, and what follows (the MSG)."""
    if rest.startswith("-"):
        return [], rest[1:].lstrip(" ")
    ids: list[str] = []
    i = 0
    n = len(rest)
    while i < n and rest[i] == "[":
        j = i + 1
        while j < n and rest[j] not in " ]":
            j += 1
        ids.append(rest[i + 1 : j])
        in_quote = False
        while j < n:  # PARAM-VALUE escapes '"', '\' and ']' with '\' (§6.3.3)
            c = rest[j]
            if c == "\\" and in_quote:
                j += 2
                continue
            if c == '"':
                in_quote = not in_quote
            elif c == "]" and not in_quote:
                break
            j += 1
        i = j + 1
    return ids, rest[i:].lstrip(" ")


def parse_syslog(
    data: bytes,
    *,
    source_ip: str | None = None,
    transport: str = "udp",
    received_ns: int | None = None,
    patterns: Patterns | None = None,
    key: bytes | None = None,
) -> SyslogMessage:
    """One syslog message -> a SyslogMessage event (the text is matched, then dropped).

    Raises InputError for bytes that are not a syslog message (empty, binary).
    """
    received_ns = time.time_ns() if received_ns is None else received_ns
    patterns = patterns or default_patterns()
    if key is None:
        from medsentry.paths import phi_key

        key = phi_key()
    if not data.strip() or b"\x00" in data[:256]:
        raise InputError("not a syslog message (empty or binary)")
    text = data[:MAX_MESSAGE].decode("utf-8", "replace").rstrip("\r\n")
    facility = severity = None
    fmt = "unknown"
    hostname = app = procid = msgid = None
    sd_ids: list[str] = []
    ts_ns: int | None = None
    body = text
    if text.startswith("<"):
        end = text.find(">", 1, 5)
        prival = text[1:end]  # RFC 5424 §6.2.1: PRIVAL = 1*3DIGIT, ASCII digits (not "¹")
        if end > 1 and prival.isascii() and prival.isdigit() and int(prival) <= 191:
            pri = int(prival)  # §6.2.1: PRI = facility * 8 + severity
            facility, severity = pri >> 3, pri & 7
            body = text[end + 1 :]
            fmt = "rfc3164"
    if body[:2] == "1 ":  # RFC 5424 §6.2.2 VERSION
        parts = body[2:].split(" ", 5)
        if len(parts) == 6:
            fmt = "rfc5424"
            ts_ns = _rfc3339_ns(parts[0])
            hostname, app, procid, msgid = (_nil(p) for p in parts[1:5])
            sd_ids, body = _structured_data(parts[5])
            msgid = _token(key, msgid)
            sd_ids = [_token(key, i) or "" for i in sd_ids]
            if body.startswith("\ufeff"):  # §6.4 BOM: MSG is UTF-8
                body = body[1:]
    if fmt != "rfc5424":
        m = _RFC3164_TS.match(body)
        if m is not None:  # RFC 3164 §4.1.2 HEADER: TIMESTAMP SP HOSTNAME SP
            mon, day, hh, mm, ss = m.groups()
            year = time.gmtime(received_ns / 1e9).tm_year
            try:  # datetime refuses a day the month does not have (Feb 31), timegm would not
                at = datetime(year, _MONTHS[mon], int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
                ts_ns = calendar.timegm(at.timetuple()) * 1_000_000_000
            except (KeyError, ValueError):
                ts_ns = None
            rest = body[m.end() :]
            host, _, after = rest.partition(" ")
            if _is_hostname(host, after):
                hostname, rest = host, after
            t = _TAG.match(rest)  # §4.1.3 MSG: TAG[pid]: CONTENT
            if t is not None:
                app, procid = t.group(1), t.group(2)
                rest = rest[t.end() :]
            body = rest
            if fmt == "unknown":
                fmt = "rfc3164"  # a syslog file line: HEADER without PRI
        elif fmt == "unknown":
            raise InputError("not a syslog message (no PRI, no RFC 3164 timestamp)")
    ids, cats, user = patterns.match(body)
    return SyslogMessage(
        ts_ns=ts_ns if ts_ns is not None else received_ns,
        source_ip=source_ip,
        transport=transport,
        format=fmt,
        facility=facility,
        severity=severity,
        hostname=hostname,
        app_name=app,
        procid=procid,
        msgid=msgid,
        sd_ids=sd_ids,
        matches=ids,
        categories=cats,
        user_hash=_keyed(key, user) if user else None,
        length=len(body.encode("utf-8", "replace")),
    )


def read_log_file(path: Path, *, patterns: Patterns | None = None) -> list[SyslogMessage]:
    """Every line of a syslog file; a line that is not syslog is an InputError naming it."""
    from medsentry.paths import phi_key

    key = phi_key()
    patterns = patterns or default_patterns()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from exc
    mtime_ns = path.stat().st_mtime_ns
    out: list[SyslogMessage] = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(
                parse_syslog(
                    line, transport="file", received_ns=mtime_ns, patterns=patterns, key=key
                )
            )
        except InputError as exc:
            raise InputError(f"{path}:{lineno}: {exc}") from None
    return out


def octet_frames(buf: bytearray) -> Iterator[bytes]:
    """Take complete frames off a TCP buffer: RFC 6587 §3.4.1 octet counting ("LEN SP MSG"),
    else §3.4.2 non-transparent framing (LF-terminated)."""
    while buf:
        if buf[:1].isdigit():
            sp = buf.find(b" ", 0, 8)
            if sp > 0 and buf[:sp].isdigit():
                n = int(buf[:sp])
                if len(buf) < sp + 1 + n:
                    return
                frame = bytes(buf[sp + 1 : sp + 1 + n])
                del buf[: sp + 1 + n]
                yield frame
                continue
        nl = buf.find(b"\n")
        if nl < 0:
            if len(buf) > MAX_MESSAGE:
                frame = bytes(buf)
                buf.clear()
                yield frame
            return
        frame = bytes(buf[:nl])
        del buf[: nl + 1]
        if frame.strip():
            yield frame


class SyslogReceiver:
    """UDP and TCP syslog listeners on one port; each parsed message goes to `on_event`.

    Malformed messages are counted (`rejected`), never raised: a device cannot stop the
    receiver with garbage.
    """

    def __init__(
        self,
        on_event: Callable[[SyslogMessage], None],
        *,
        host: str = "0.0.0.0",
        port: int = 514,
        udp: bool = True,
        tcp: bool = True,
        patterns: Patterns | None = None,
    ) -> None:
        from medsentry.paths import phi_key

        self.on_event = on_event
        self.patterns = patterns or default_patterns()
        self.key = phi_key()
        self.received = 0
        self.rejected = 0
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        receiver = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                receiver._deliver(self.request[0], self.client_address[0], "udp")

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                buf = bytearray()
                sock: socket.socket = self.request
                while True:
                    try:
                        chunk = sock.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        for frame in octet_frames(buf + b"\n" if buf else buf):
                            receiver._deliver(frame, self.client_address[0], "tcp")
                        return
                    buf.extend(chunk)
                    for frame in octet_frames(buf):
                        receiver._deliver(frame, self.client_address[0], "tcp")

        class ThreadingUDP(socketserver.ThreadingMixIn, socketserver.UDPServer):
            allow_reuse_address = True
            daemon_threads = True

        class ThreadingTCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
            allow_reuse_address = True
            daemon_threads = True

        try:
            if udp:
                self._servers.append(ThreadingUDP((host, port), Udp))
            if tcp:
                self._servers.append(ThreadingTCP((host, port), Tcp))
        except OSError as exc:
            self.close()
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc

    @property
    def addresses(self) -> list[Any]:
        return [s.server_address for s in self._servers]  # type: ignore[attr-defined]

    def _deliver(self, data: bytes, source_ip: str, transport: str) -> None:
        try:
            ev = parse_syslog(
                data, source_ip=source_ip, transport=transport, patterns=self.patterns, key=self.key
            )
        except InputError:
            with self._lock:
                self.rejected += 1
            return
        with self._lock:
            self.received += 1
            self.on_event(ev)

    def start(self) -> SyslogReceiver:
        for s in self._servers:
            t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self) -> None:
        for s in self._servers:
            if self._threads:
                s.shutdown()
            s.server_close()
        self._servers = []
