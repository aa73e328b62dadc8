"""What the flow-application tests share: two hosts, an HTTP exchange, the identifier."""

from __future__ import annotations

import pytest

from medsentry.capture.writer import Host
from medsentry.flows.apps import load_identifier

T0 = 1_700_000_000 * 10**9
C = Host(ip="10.1.0.5", mac="02:00:00:00:01:05")
S = Host(ip="10.1.0.9", mac="02:00:00:00:01:09")
HTTP_REQ = b"GET /index.html HTTP/1.1\r\nHost: ehr\r\nAccept: */*\r\n\r\n"
HTTP_RESP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"

identify = load_identifier()
needs_identify = pytest.mark.skipif(identify is None, reason="medsentry.protocols.identify absent")
