"""`skippable`/`skip`: HTTP body bytes nobody reads can be passed by length, with the same
events as feeding them (Content-Length, chunked and read-until-close bodies; FHIR bodies that
are peeked are never skippable)."""

from __future__ import annotations

import json

import pytest

from medsentry.events.base import Endpoints
from medsentry.protocols.base import FlowContext
from medsentry.protocols.http import HttpDissector
from skipfeed import feed_chunks

BODY = bytes(range(256)) * 400  # 100 KiB


def _ctx() -> FlowContext:
    return FlowContext("h1", Endpoints(client="10.0.0.1", server="10.0.0.2", server_port=80), b"k")


def _chunked(body: bytes, size: int = 7000) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        part = body[i : i + size]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


def _streams() -> list[tuple[int, bytes]]:
    bundle = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": []}).encode()
    return [
        (0, b"POST /upload HTTP/1.1\r\nHost: pacs\r\nContent-Length: %d\r\n\r\n" % len(BODY)),
        (0, BODY),
        (1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(BODY)),
        (0, b"POST /fhir HTTP/1.1\r\nHost: ehr\r\nContent-Type: application/fhir+json\r\n"),
        (0, b"Content-Length: %d\r\n\r\n" % len(bundle) + bundle),
        (1, b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"),
        (1, b"Content-Length: %d\r\n\r\n" % len(bundle) + bundle),
        (0, b"GET /big HTTP/1.0\r\nHost: pacs\r\n\r\n"),
        (1, b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n" + BODY),
    ]


def _run(chunk: int, use_skip: bool) -> tuple[list[bytes], int]:
    return feed_chunks(HttpDissector(_ctx()), _streams(), chunk, use_skip)


@pytest.mark.parametrize("chunk", [1, 100, 1460, 9000, 200_000])
def test_skipping_body_bytes_gives_the_same_events(chunk: int) -> None:
    fed, _ = _run(chunk, False)
    got, skipped = _run(chunk, True)
    assert got == fed
    assert len([e for e in fed if b'"http_response"' in e]) == 3
    if chunk <= 1460:
        assert skipped > 2 * len(BODY)  # the three bulk bodies were mostly passed by length


def test_a_peeked_body_is_not_skippable() -> None:
    d = HttpDissector(_ctx(), assume_fhir=True)
    d.feed(0, b"POST /fhir HTTP/1.1\r\nContent-Type: application/fhir+json\r\n", 0)
    d.feed(0, b"Content-Length: 500\r\n\r\n{", 0)
    assert d.skippable(0) == 0
