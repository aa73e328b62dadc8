"""SSDP (UPnP Device Architecture 2.0 §1.2-1.3): HTTP-shaped datagrams over UDP 1900.

NOTIFY announcements and search responses name the device's UPnP type (NT/ST), its unique
service name (USN), the URL of its description (LOCATION) and its OS/UPnP/product (SERVER).
Each distinct announcement is reported once per flow: devices repeat them every few minutes.
"""

from __future__ import annotations

import re

from medsentry.events.base import Event
from medsentry.events.identity import SsdpMessage
from medsentry.protocols.base import FlowContext, ParseError
from medsentry.protocols.registry import register_stream
from medsentry.protocols.streamkit import StreamDissector, text

_START = re.compile(rb"^(?:(NOTIFY|M-SEARCH) \* HTTP/1\.[01]|HTTP/1\.[01] (\d{3})(?: .*)?)$")
MAX_SEEN = 256


class SsdpDissector(StreamDissector):
    protocol = "ssdp"

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self.seen: set[tuple] = set()

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        lines = data.split(b"\n")
        m = _START.match(lines[0].rstrip(b"\r"))
        if not m:
            raise ParseError(f"not an SSDP start line ({len(lines[0])} bytes)")
        method = m.group(1).decode() if m.group(1) else "RESPONSE"
        h: dict[str, str] = {}
        for line in lines[1:]:
            line = line.rstrip(b"\r")
            if not line:
                break
            name, sep, value = line.partition(b":")
            if sep:
                key = name.strip().decode("latin-1").upper()
                h.setdefault(key, text(value.strip(), 512))
        key = (method, h.get("USN"), h.get("NT") or h.get("ST"), h.get("NTS"), h.get("SERVER"))
        if key in self.seen:
            return []
        if len(self.seen) < MAX_SEEN:
            self.seen.add(key)
        return [
            SsdpMessage(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                method=method,
                server=h.get("SERVER"),
                user_agent=h.get("USER-AGENT"),
                usn=h.get("USN"),
                nt=h.get("NT") or h.get("ST"),
                nts=h.get("NTS"),
                location=h.get("LOCATION"),
            )
        ]


register_stream("ssdp", SsdpDissector)
