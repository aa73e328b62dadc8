"""Alert outputs: JSON lines, syslog RFC 5424 and CEF over UDP/TCP, an HTTP webhook.

- RFC 5424 §6: `<PRI>1 TIMESTAMP HOSTNAME medsentry - ALERT [medsentry@32473 ...] title`,
  facility 4 (security/authorization), severity from the alert's. 32473 is the IANA example
  enterprise number (RFC 5612) used as the SD-ID suffix.
- CEF (ArcSight Common Event Format rev. 25): `CEF:0|medsentry|medsentry|ver|rule|title|sev|ext`,
  carried as the MSG of an RFC 5424 message.
- Over UDP one message per datagram (RFC 5426 §3.1); over TCP octet-counting framing
  "MSG-LEN SP SYSLOG-MSG" (RFC 6587 §3.4.1).
- Network outputs run on a background thread (`Background`) so a slow collector never slows
  detection; delivery failures are counted and reported, never raised into the engine.
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import msgspec

import medsentry
from medsentry.controlchars import one_line
from medsentry.detect.base import Alert
from medsentry.errors import ConfigError

# RFC 5424 §6.2.1 severities
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
FACILITY_SECURITY = 4
# CEF severity 0-10
CEF_SEVERITY = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
SD_ID = "medsentry@32473"

_enc = msgspec.json.Encoder()


def alert_json(alert: Alert) -> bytes:
    return _enc.encode(alert)


def _sd_escape(v: str) -> str:
    """RFC 5424 §6.3.3: escape '"', '\\' and ']' in PARAM-VALUE (controls shown as escapes
    first, so that their backslash is escaped too)."""
    return one_line(v).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _ts(ns: int) -> str:
    return (
        datetime.fromtimestamp(ns / 1e9, UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def format_rfc5424(alert: Alert, hostname: str | None = None, msg: str | None = None) -> str:
    pri = FACILITY_SECURITY * 8 + SYSLOG_SEVERITY[alert.severity]
    host = (hostname or socket.gethostname() or "-")[:255]
    params = {
        "alertId": alert.alert_id,
        "rule": alert.rule_id,
        "source": alert.source,
        "severity": alert.severity,
        "device": alert.device_id or "",
        "technique": alert.technique_id,
        "count": str(alert.count),
        "firstSeen": _ts(alert.first_seen_ns),
        "lastSeen": _ts(alert.last_seen_ns),
        "status": alert.status,
    }
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params.items()) + "]"
    body = (
        msg if msg is not None else f"{alert.title} ({alert.technique_id} {alert.technique_name})"
    )
    # one message, one line: a newline or ESC in an observed name must not forge another line
    return f"<{pri}>1 {_ts(time.time_ns())} {host} medsentry - ALERT {sd} {one_line(body)}"


def _cef_header(v: str) -> str:
    # a control shown as an escape before CEF's own escaping doubles its backslash
    return one_line(v.replace("\n", " ")).replace("\\", "\\\\").replace("|", "\\|")


def _cef_ext(v: str) -> str:
    # CEF's \n and \r for line breaks; any other control shown as an escape first, whose
    # backslash CEF's escaping then doubles
    return "".join(
        _CEF_BREAK.get(part) or one_line(part).replace("\\", "\\\\").replace("=", "\\=")
        for part in _LINE_BREAK.split(v)
    )


_CEF_BREAK = {"\n": "\\n", "\r": "\\r"}
_LINE_BREAK = re.compile("([\r\n])")


def format_cef(alert: Alert) -> str:
    ext = {
        "externalId": alert.alert_id,
        "cat": alert.source,
        "act": alert.status,
        "cnt": str(alert.count),
        "start": str(alert.first_seen_ns // 1_000_000),
        "end": str(alert.last_seen_ns // 1_000_000),
        "rt": str(time.time_ns() // 1_000_000),
        "cs1Label": "technique",
        "cs1": f"{alert.technique_id} {alert.technique_name}",
        "cs2Label": "deviceId",
        "cs2": alert.device_id or "",
        "msg": alert.title,
    }
    header = "|".join(
        _cef_header(x)
        for x in (
            "CEF:0",
            "medsentry",
            "medsentry",
            getattr(medsentry, "__version__", "0"),
            alert.rule_id,
            alert.title,
            str(CEF_SEVERITY[alert.severity]),
        )
    )
    return header + "|" + " ".join(f"{k}={_cef_ext(v)}" for k, v in ext.items())


class JsonLinesSink:
    """One alert per line (msgspec JSON), appended and flushed."""

    def __init__(self, path: str | Path) -> None:
        if not str(path).strip():
            raise ConfigError("jsonl alert output: the file path is empty")
        self.path = Path(path)
        self.where = f"jsonl {self.path}"
        try:
            self._fh = self.path.open("ab")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot open for alerts: {exc.strerror}") from exc

    def send(self, alert: Alert) -> None:
        self._fh.write(alert_json(alert) + b"\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def parse_endpoint(url: str) -> tuple[str, str, int]:
    """ "udp://host:port" or "tcp://host:port" -> (transport, host, port)."""
    try:
        u = urlsplit(url)
        port = u.port  # ValueError: not a number, or out of 0-65535
    except ValueError:
        u, port = None, None
    if u is None or u.scheme not in ("udp", "tcp") or not u.hostname or not port:
        raise ConfigError(f"{url!r}: expected udp://HOST:PORT or tcp://HOST:PORT")
    return u.scheme, u.hostname, port


def _where(url: str) -> str:
    """scheme://host[:port] of an output URL: what a message may show of it (a webhook's path
    and query often hold its secret token, its user part a password)."""
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        return "(unparsable URL)"
    host = f"[{u.hostname}]" if u.hostname and ":" in u.hostname else (u.hostname or "")
    return f"{u.scheme}://{host}{f':{port}' if port else ''}"


class SyslogSink:
    """Alerts as RFC 5424 (or CEF inside RFC 5424) to a collector over UDP or TCP."""

    def __init__(self, url: str, fmt: str = "rfc5424", hostname: str | None = None) -> None:
        if fmt not in ("rfc5424", "cef"):
            raise ConfigError(f"syslog output format {fmt!r}: expected rfc5424 or cef")
        self.transport, self.host, self.port = parse_endpoint(url)
        self.where = f"{'cef' if fmt == 'cef' else 'syslog'} {_where(url)}"
        self.fmt = fmt
        self.hostname = hostname
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None
        self._sock: socket.socket | None = None

    def _message(self, alert: Alert) -> bytes:
        if self.fmt == "cef":
            return format_rfc5424(alert, self.hostname, msg=format_cef(alert)).encode()
        return format_rfc5424(alert, self.hostname).encode()

    def _connect(self) -> socket.socket:
        if self._sock is None:
            if self.transport == "udp":  # the collector's address family (IPv4 or IPv6)
                family, *_ = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
                self._sock = socket.socket(family, socket.SOCK_DGRAM)
            else:
                self._sock = socket.create_connection((self.host, self.port), timeout=5)
        return self._sock

    def send(self, alert: Alert) -> None:
        msg = self._message(alert)
        for attempt in (0, 1):
            try:
                s = self._connect()
                if self.transport == "udp":
                    s.sendto(msg, (self.host, self.port))
                else:
                    s.sendall(str(len(msg)).encode() + b" " + msg)  # RFC 6587 §3.4.1
                self.sent += 1
                return
            except OSError as exc:
                self.last_error = str(exc)
                self.close()
                if attempt:
                    self.failed += 1

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class WebhookSink:
    """POST each alert as JSON to an HTTP(S) endpoint."""

    def __init__(self, url: str, timeout: float = 5.0, headers: dict[str, str] | None = None):
        try:
            u = urlsplit(url)
            ok = u.scheme in ("http", "https") and bool(u.hostname) and u.port != 0
        except ValueError:  # a port that is not a number, a broken [IPv6] literal
            ok = False
        if not ok:
            raise ConfigError(
                f"webhook {_where(url)}: expected an http:// or https:// URL with a host"
            )
        auth: dict[str, str] = {}
        if u.username is not None:  # user:password@ in the URL: HTTP Basic (RFC 7617 §2)
            pair = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
            auth["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
            url = urlunsplit(u._replace(netloc=u.netloc.rpartition("@")[2]))
        self.url = url
        self.where = f"webhook {_where(url)}"
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", **auth, **(headers or {})}
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None

    def send(self, alert: Alert) -> None:
        req = urllib.request.Request(
            self.url, data=alert_json(alert), headers=self.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
            self.sent += 1
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.failed += 1
            self.last_error = str(exc)

    def close(self) -> None:
        return None


class Background:
    """Run a sink on its own thread behind a bounded queue (drops, counted, when full)."""

    def __init__(self, sink: Any, maxsize: int = 10_000) -> None:
        self.sink = sink
        self.q: queue.Queue[Alert | None] = queue.Queue(maxsize)
        self.dropped = 0
        self.given = 0  # alerts queued (dropped ones not counted)
        self.undelivered = 0
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            a = self.q.get()
            if a is None:
                return
            self.sink.send(a)

    def send(self, alert: Alert) -> None:
        try:
            self.q.put_nowait(msgspec.structs.replace(alert))
            self.given += 1
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued, for up to `timeout` seconds; what is left is undelivered
        (the alert in flight included: its outcome comes too late to be told)."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):  # a full queue behind a hung collector
            self.q.put(None, timeout=timeout)
        self._t.join(timeout=max(deadline - time.monotonic(), 0.0))
        if self._t.is_alive():  # a slow or hung collector: the rest stays undelivered
            self.undelivered = max(self.given - self.sink.sent - self.sink.failed, 0)
        self.sink.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)


def delivery_problems(sinks: Sequence[Any]) -> list[str]:
    """One line per output that did not deliver every alert it was given (after `close`):
    how many failed, were dropped (queue full) or were still queued, and the last error."""
    out = []
    for sink in sinks:
        failed = getattr(sink, "failed", 0)
        dropped = getattr(sink, "dropped", 0)
        undelivered = getattr(sink, "undelivered", 0)
        lost = failed + dropped + undelivered
        if not lost:
            continue
        given = getattr(sink, "sent", 0) + lost
        why = [f"{n} {what}" for n, what in ((failed, "failed"), (dropped, "dropped: queue full"),
               (undelivered, "still queued at exit")) if n]  # fmt: skip
        last = getattr(sink, "last_error", None)
        out.append(
            f"alert output {getattr(sink, 'where', type(sink).__name__)}: {lost} of {given}"
            f" alerts not delivered ({', '.join(why)})"
            + (f"; last error: {one_line(last)[:200]}" if last else "")
        )
    return out


def build_sinks(
    *,
    jsonl: list[str] | None = None,
    syslog: list[str] | None = None,
    cef: list[str] | None = None,
    webhook: list[str] | None = None,
) -> list[Any]:
    sinks: list[Any] = [JsonLinesSink(p) for p in jsonl or []]
    sinks += [Background(SyslogSink(u, "rfc5424")) for u in syslog or []]
    sinks += [Background(SyslogSink(u, "cef")) for u in cef or []]
    sinks += [Background(WebhookSink(u)) for u in webhook or []]
    return sinks


def sinks_from_config(cfg: dict[str, Any]) -> list[Any]:
    """`outputs:` of detect.yaml: [{jsonl: PATH} | {syslog: URL} | {cef: URL} | {webhook: URL}]."""
    args: dict[str, list[str]] = {"jsonl": [], "syslog": [], "cef": [], "webhook": []}
    for i, out in enumerate(cfg.get("outputs") or []):
        if not isinstance(out, dict) or len(out) != 1 or next(iter(out)) not in args:
            raise ConfigError(
                f"detect.yaml: outputs[{i}]: expected one of jsonl, syslog, cef, webhook: "
                f"{json.dumps(out)[:80]}"
            )
        k, v = next(iter(out.items()))
        args[k].append(str(v))
    return build_sinks(**args)
