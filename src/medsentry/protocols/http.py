"""HTTP/1.x message heads over a reassembled TCP stream (RFC 9112), with FHIR REST on top.

Requests and responses may be pipelined; bodies are framed by Content-Length or chunked
transfer coding (RFC 9112 §6, §7.1) and skipped as they arrive, never buffered whole. Only two
bodies are read, bounded: a FHIR CapabilityStatement and a Bundle POSTed to a FHIR base.
Query-string values and credentials never leave: a path keeps parameter names only, and an
Authorization header yields its scheme (plus, for Basic, the keyed hash of the username).
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections import deque
from dataclasses import dataclass, field

from medsentry.events.base import Event
from medsentry.events.credentials import CleartextCredentials
from medsentry.events.http import FhirInteraction, HttpRequest, HttpResponse
from medsentry.protocols import fhir, template
from medsentry.protocols.base import CLIENT_TO_SERVER, FlowContext, ParseError
from medsentry.protocols.registry import register_stream
from medsentry.protocols.streamkit import StreamDissector, text

MAX_HEAD = 64 * 1024  # a message head larger than this is not HTTP we follow
MAX_CHUNK_LINE = 1024
MAX_PENDING = 64  # pipelined requests awaiting a response
MAX_BODY_PEEK = 256 * 1024  # bounded read of a CapabilityStatement / transaction Bundle
MAX_PATH = 512

# RFC 9112 §3: request-line = method SP request-target SP HTTP-version
# (the target is taken up to the last " HTTP/": attack traffic puts spaces in it)
_REQUEST_LINE = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,24}) (\S.{0,65535}?) (HTTP/\d\.\d)$")
# RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
_STATUS_LINE = re.compile(rb"^(HTTP/\d\.\d) (\d{3})(?: .*)?$")
_HEAD_END = re.compile(rb"\r?\n\r?\n")

# States of one direction's parser.
HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, TRAILERS, UNTIL_CLOSE, STOPPED = range(8)


@dataclass(slots=True)
class _Pending:
    """A request waiting for its response."""

    method: str
    ts_ns: int
    fhir: fhir.FhirRequest | None
    request_body: bool = False
    body_types: set[str] = field(default_factory=set)
    status: int | None = None  # of the response, once seen
    response_ctype: str | None = None


@dataclass(slots=True)
class _Side:
    buf: bytearray = field(default_factory=bytearray)
    state: int = HEAD
    remaining: int = 0
    peek: bytearray | None = None  # the bounded body being read, when one is wanted
    peek_encoding: str | None = None
    message: _Pending | None = None  # the message whose body is being framed
    body_seen: bool = False


def _split_target(target: str) -> tuple[str, str]:
    """Path and query of a request-target (RFC 9112 §3.2, RFC 3986 §3.3-3.5), as sent."""
    path, _, query = target.partition("?")
    path = path.split("#", 1)[0]
    query = query.split("#", 1)[0]
    if "://" in path:  # absolute-form (RFC 9112 §3.2.2), as sent to proxies
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return path, query


def _headers(lines: list[bytes]) -> dict[str, str]:
    """Header fields (RFC 9112 §5); names lowercased, first occurrence kept, obs-fold joined."""
    out: dict[str, str] = {}
    last: str | None = None
    for line in lines:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if last is not None:  # RFC 9112 §5.2 obs-fold
                out[last] += " " + line.strip().decode("latin-1")
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ParseError(f"malformed header line ({len(line)} bytes, no colon)")
        key = name.decode("latin-1").lower()
        last = key
        if key not in out:
            out[key] = value.strip().decode("latin-1")
    return out


def _content_length(h: dict[str, str]) -> int | None:
    v = h.get("content-length")
    if v is None:
        return None
    v = v.split(",")[0].strip()
    if not (v.isascii() and v.isdigit()) or len(v) > 15:  # "1*DIGIT": ASCII only, not "²"
        raise ParseError("Content-Length is not a decimal number (RFC 9110 §8.6)")
    return int(v)


def _chunked(h: dict[str, str]) -> bool:
    te = h.get("transfer-encoding")
    return te is not None and te.lower().rsplit(",", 1)[-1].strip() == "chunked"


class HttpDissector(StreamDissector):
    protocol = "http"
    whole_stream = True

    def __init__(self, ctx: FlowContext, assume_fhir: bool = False) -> None:
        super().__init__(ctx)
        self.assume_fhir = assume_fhir
        self.sides = (_Side(), _Side())
        self.pending: deque[_Pending] = deque()
        self.stopped = False
        self.basic_users: set[str] = set()

    # -- the Dissector interface ---------------------------------------------------------------

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        if self.stopped or not data:
            return []
        side = self.sides[direction]
        if side.state == STOPPED:
            return []
        side.buf += data
        out: list[Event] = []
        self._run(direction, side, ts_ns, out)
        return out

    def skippable(self, direction: int) -> int:
        """How many of the next bytes of `direction` would only be counted: the middle of a
        body nobody reads (no bounded peek), short of its last byte."""
        side = self.sides[direction]
        if self.stopped or side.buf or side.peek is not None:
            return 0
        if side.state in (BODY, CHUNK_DATA):
            return max(side.remaining - 1, 0)
        return 1 << 62 if side.state == UNTIL_CLOSE else 0

    def skip(self, direction: int, length: int) -> None:
        """`feed` of `length` bytes (at most `skippable(direction)`) without the bytes."""
        if length:
            side = self.sides[direction]
            side.body_seen = True
            if side.state != UNTIL_CLOSE:
                side.remaining -= length

    def gap(self, direction: int, length: int, ts_ns: int) -> list[Event]:
        side = self.sides[direction]
        if side.state in (BODY, CHUNK_DATA) and not side.buf and length <= side.remaining:
            side.remaining -= length  # the hole lies inside a body: framing survives
            side.peek = None
            out: list[Event] = []
            if side.state == BODY and side.remaining == 0:
                self._body_done(direction, side, ts_ns, out)
            elif side.state == CHUNK_DATA and side.remaining == 0:
                side.state = CHUNK_CRLF
            return out
        if side.state != UNTIL_CLOSE:
            self.stopped = True  # lost the message boundaries: stop rather than guess
        return []

    def close(self, ts_ns: int) -> list[Event]:
        out: list[Event] = []
        s2c = self.sides[1]
        if s2c.state == UNTIL_CLOSE and s2c.message is not None:
            self._body_done(1, s2c, ts_ns, out)
        while self.pending:  # requests that never got a response
            p = self.pending.popleft()
            if p.fhir is not None:
                out.append(self._fhir_event(p, None, ts_ns, None))
        return out

    # -- parsing ---------------------------------------------------------------------------------

    def _run(self, direction: int, side: _Side, ts_ns: int, out: list[Event]) -> None:
        while side.buf and side.state != STOPPED and not self.stopped:
            st = side.state
            if st == HEAD:
                m = _HEAD_END.search(side.buf)
                if m is None:
                    if len(side.buf) > MAX_HEAD:
                        raise ParseError(f"HTTP message head longer than {MAX_HEAD} bytes")
                    if side.buf[:1] in (b"\r", b"\n") and len(side.buf) <= 2:
                        return
                    self._check_start(direction, side.buf)
                    return
                head = bytes(side.buf[: m.start()])
                del side.buf[: m.end()]
                if direction == CLIENT_TO_SERVER:
                    self._request(head, side, ts_ns, out)
                else:
                    self._response(head, side, ts_ns, out)
            elif st in (BODY, CHUNK_DATA, UNTIL_CLOSE):
                n = len(side.buf) if st == UNTIL_CLOSE else min(side.remaining, len(side.buf))
                self._take_body(side, n)
                if st == UNTIL_CLOSE:
                    return
                side.remaining -= n
                if side.remaining == 0:
                    if st == BODY:
                        self._body_done(direction, side, ts_ns, out)
                    else:
                        side.state = CHUNK_CRLF
            elif st == CHUNK_SIZE:
                i = side.buf.find(b"\n")
                if i < 0:
                    if len(side.buf) > MAX_CHUNK_LINE:
                        raise ParseError("chunk-size line too long")
                    return
                line = bytes(side.buf[:i]).strip().split(b";", 1)[0].strip()
                del side.buf[: i + 1]
                try:
                    size = int(line, 16)  # RFC 9112 §7.1 chunk-size = 1*HEXDIG
                except ValueError:
                    raise ParseError("chunk size is not hexadecimal (RFC 9112 §7.1)") from None
                if size < 0 or len(line) > 16:
                    raise ParseError("bad chunk size")
                if size == 0:
                    side.state = TRAILERS
                else:
                    side.state, side.remaining = CHUNK_DATA, size
            elif st == CHUNK_CRLF:
                if len(side.buf) < 2 and side.buf[:1] == b"\r":
                    return
                if side.buf[:2] == b"\r\n":
                    del side.buf[:2]
                elif side.buf[:1] == b"\n":
                    del side.buf[:1]
                else:
                    raise ParseError("chunk data not followed by CRLF")
                side.state = CHUNK_SIZE
            elif st == TRAILERS:
                i = side.buf.find(b"\n")
                if i < 0:
                    if len(side.buf) > MAX_HEAD:
                        raise ParseError("trailer section too long")
                    return
                line = bytes(side.buf[:i]).strip()
                del side.buf[: i + 1]
                if not line:  # RFC 9112 §7.1.2: trailer-section ends with an empty line
                    self._body_done(direction, side, ts_ns, out)

    def _check_start(self, direction: int, buf: bytearray) -> None:
        """Reject early a stream that cannot be HTTP (the first line is complete and wrong)."""
        i = buf.find(b"\n")
        if i < 0:
            if len(buf) > 8192:
                raise ParseError("no HTTP start line in the first 8 KiB")
            return
        line = bytes(buf[:i]).rstrip(b"\r")
        pattern = _REQUEST_LINE if direction == CLIENT_TO_SERVER else _STATUS_LINE
        if not pattern.match(line):
            raise ParseError(f"not an HTTP start line ({len(line)} bytes)")

    def _take_body(self, side: _Side, n: int) -> None:
        if n and side.peek is not None:
            room = MAX_BODY_PEEK - len(side.peek)
            side.peek += side.buf[: min(n, room)]
        if n:
            side.body_seen = True
        del side.buf[:n]

    def _request(self, head: bytes, side: _Side, ts_ns: int, out: list[Event]) -> None:
        lines = [ln.rstrip(b"\r") for ln in head.split(b"\n")]
        while lines and not lines[0]:  # RFC 9112 §2.2: ignore CRLF before a request-line
            lines.pop(0)
        if not lines:
            return
        m = _REQUEST_LINE.match(lines[0])
        if not m:
            raise ParseError(f"not an HTTP request line ({len(lines[0])} bytes)")
        method = m.group(1).decode("ascii")
        version = m.group(3).decode("ascii")
        h = _headers(lines[1:])
        raw_path, query = _split_target(m.group(2).decode("latin-1"))
        length = _content_length(h)
        chunked = _chunked(h)
        content_type = h.get("content-type")
        req = (
            fhir.classify(method, raw_path, query, content_type, h.get("accept"), self.assume_fhir)
            if method != "CONNECT"
            else None
        )
        auth = h.get("authorization")
        scheme = auth.split(None, 1)[0][:32] if auth and auth.strip() else None
        # segments and names may be record numbers or names: templates only
        if req is not None:
            path, params = req.path_template, req.search_params
        else:
            path, params = template.path_template(raw_path), template.query_names(query)
        path = text(path.encode("utf-8", "replace"), MAX_PATH) or "/"
        user_agent = h.get("user-agent")
        ep = self.ctx.endpoints
        out.append(
            HttpRequest(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=ep,
                method=method,
                path=path,
                query_params=params,
                version=version,
                host=_opt(h.get("host"), 255),
                user_agent=_opt(template.user_agent_template(user_agent), 512)
                if user_agent is not None
                else None,
                content_type=_opt(content_type, 128),
                content_length=length,
                auth_scheme=scheme,
            )
        )
        for header in ("authorization", "proxy-authorization"):
            self._basic(h.get(header), ts_ns, out)
        pending = _Pending(method=method, ts_ns=ts_ns, fhir=req)
        if len(self.pending) >= MAX_PENDING:
            old = self.pending.popleft()
            if old.fhir is not None:
                out.append(self._fhir_event(old, None, ts_ns, None))
        self.pending.append(pending)
        side.message = pending
        side.peek = bytearray() if req is not None and req.wants_body else None
        side.peek_encoding = h.get("content-encoding")
        if chunked:
            side.state = CHUNK_SIZE
        elif length:
            side.state, side.remaining = BODY, length
        else:
            side.state = HEAD  # RFC 9112 §6.3 rule 7: no framing, no body
            self._request_done(side)
        pending.request_body = bool(chunked or length)

    def _basic(self, value: str | None, ts_ns: int, out: list[Event]) -> None:
        """HTTP Basic (RFC 7617 §2): user-id ":" password, base64; only the user-id is hashed."""
        if not value:
            return
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "basic":
            return
        try:
            raw = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return
        user, sep, password = raw.partition(b":")
        username = self.ctx.phi_hash(user)
        if username in self.basic_users:
            return
        self.basic_users.add(username)
        out.append(
            CleartextCredentials(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                protocol="http",
                mechanism="basic",
                username_hash=username,
                password_sent=bool(sep and password),
            )
        )

    def _request_done(self, side: _Side) -> None:
        p = side.message
        if p is not None and side.peek is not None and p.fhir is not None:
            body = _decoded(side.peek, side.peek_encoding)
            kind = fhir.bundle_type(body)
            if kind is not None and p.fhir.interaction == "transaction":
                p.fhir.interaction = kind
            p.body_types = fhir.resource_types_in(body)
        side.peek = None
        side.message = None

    def _response(self, head: bytes, side: _Side, ts_ns: int, out: list[Event]) -> None:
        lines = [ln.rstrip(b"\r") for ln in head.split(b"\n")]
        while lines and not lines[0]:
            lines.pop(0)
        if not lines:
            return
        m = _STATUS_LINE.match(lines[0])
        if not m:
            raise ParseError(f"not an HTTP status line ({len(lines[0])} bytes)")
        status = int(m.group(2))
        h = _headers(lines[1:])
        length = _content_length(h)
        interim = 100 <= status < 200 and status != 101
        p = self.pending[0] if self.pending else None
        if not interim and p is not None:
            self.pending.popleft()
        challenge = h.get("www-authenticate")
        out.append(
            HttpResponse(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                status=status,
                version=m.group(1).decode("ascii"),
                request_method=p.method if p else None,
                server=_opt(h.get("server"), 255),
                content_type=_opt(h.get("content-type"), 128),
                content_length=length,
                www_authenticate=challenge.split(None, 1)[0][:32] if challenge else None,
            )
        )
        if interim:
            return
        method = p.method if p else None
        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            # RFC 9110 §15.2.2, §9.3.6: the connection now carries another protocol
            self.stopped = True
            if p is not None and p.fhir is not None:
                out.append(self._fhir_event(p, status, ts_ns, None))
            return
        msg = _Pending(
            method=method or "",
            ts_ns=ts_ns,
            fhir=p.fhir if p else None,
            request_body=p.request_body if p else False,
            body_types=p.body_types if p else set(),
        )
        msg.status, msg.response_ctype = status, h.get("content-type")
        side.message = msg
        side.body_seen = False
        wants = msg.fhir is not None and msg.fhir.interaction == "capabilities"
        side.peek = bytearray() if wants else None
        side.peek_encoding = h.get("content-encoding")
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        if no_body:
            self._response_done(side, ts_ns, out)
        elif _chunked(h):
            side.state = CHUNK_SIZE
        elif "transfer-encoding" in h:
            side.state = UNTIL_CLOSE  # RFC 9112 §6.3 rule 4
        elif length is not None:
            if length == 0:
                self._response_done(side, ts_ns, out)
            else:
                side.state, side.remaining = BODY, length
        else:
            side.state = UNTIL_CLOSE  # RFC 9112 §6.3 rule 8

    def _body_done(self, direction: int, side: _Side, ts_ns: int, out: list[Event]) -> None:
        side.state = HEAD
        if direction == CLIENT_TO_SERVER:
            self._request_done(side)
        else:
            self._response_done(side, ts_ns, out)

    def _response_done(self, side: _Side, ts_ns: int, out: list[Event]) -> None:
        msg = side.message
        side.message = None
        if msg is None or msg.fhir is None:
            side.peek = None
            return
        cap = None
        if side.peek is not None:
            cap = fhir.capability_statement(_decoded(side.peek, side.peek_encoding))
        side.peek = None
        out.append(
            self._fhir_event(msg, msg.status, ts_ns, cap, msg.response_ctype, side.body_seen)
        )

    def _fhir_event(
        self,
        p: _Pending,
        status: int | None,
        ts_ns: int,
        cap: fhir.Capability | None,
        response_ctype: str | None = None,
        response_body: bool = False,
    ) -> FhirInteraction:
        req = p.fhir
        assert req is not None
        fhir_typed = req.mime_type is not None or fhir.is_fhir_mime(response_ctype)
        level = fhir.holds_patient_data(req, p.body_types, fhir_typed)
        ok = status is not None and 200 <= status < 300
        in_clear = level and (
            (p.request_body and req.method in ("POST", "PUT", "PATCH")) or (ok and response_body)
        )
        version = req.fhir_version or fhir.mime_fhir_version(response_ctype)
        if cap is not None and cap.fhir_version:
            version = cap.fhir_version
        mime = req.mime_type
        if mime is None and fhir.is_fhir_mime(response_ctype):
            mime = response_ctype.split(";")[0].strip().lower()  # type: ignore[union-attr]
        return FhirInteraction(
            ts_ns=ts_ns,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            interaction=req.interaction,
            method=req.method,
            path_template=req.path_template,
            resource_type=req.resource_type,
            operation=req.operation,
            search_params=req.search_params if req.interaction == "search" else [],
            status=status,
            fhir_version=version,
            mime_type=mime,
            patient_level=level,
            patient_data_in_clear=in_clear,
            software_name=cap.software_name if cap else None,
            software_version=cap.software_version if cap else None,
        )


def _opt(value: str | None, limit: int) -> str | None:
    return text(value.encode("latin-1", "replace"), limit) if value is not None else None


def _decoded(body: bytearray, encoding: str | None) -> bytes:
    """A peeked body, decompressed (bounded) when it carries gzip/deflate (RFC 9110 §8.4.1)."""
    if not encoding or encoding.strip().lower() not in ("gzip", "x-gzip", "deflate"):
        return bytes(body)
    wbits = 47 if "gzip" in encoding.lower() else 15  # 32+15: auto-detect gzip/zlib header
    try:
        return zlib.decompressobj(wbits).decompress(bytes(body), MAX_BODY_PEEK)
    except zlib.error:
        return b""


def _fhir_factory(ctx: FlowContext) -> HttpDissector:
    d = HttpDissector(ctx, assume_fhir=True)
    return d


register_stream("http", HttpDissector)
register_stream("fhir", _fhir_factory)
