"""DICOM over TLS (PS3.15 Annex B.1, "dicom-tls" port 2762): recognized as encrypted DICOM.

Protocol identification labels a TLS flow on port 2762 "dicom-tls" (data/protocol_signatures.yaml).
Its association, commands and data sets cannot be seen; this dissector states that the flow is
encrypted DICOM (`DicomOverTls`, at close, with the bytes each way) and hands the bytes to the
TLS dissector when one is registered, so the handshake (versions, ciphers, certificate) is still
reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar

from medsentry.events.base import Event
from medsentry.events.dicom import DicomOverTls
from medsentry.protocols.base import Dissector, FlowContext, ParseError
from medsentry.protocols.registry import STREAM_DISSECTORS

DICOM_TLS_PORT = 2762  # IANA service name "dicom-tls"


class DicomTlsDissector:
    protocol: ClassVar[str] = "dicom-tls"
    whole_stream: ClassVar[bool] = True

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self._bytes = [0, 0]
        factory = STREAM_DISSECTORS.get("tls")
        self._tls: Dissector | None = factory(ctx) if factory is not None else None

    def _inner(
        self, call: Callable[..., Iterable[Event]] | None, *args: int | bytes
    ) -> list[Event]:
        if self._tls is None or call is None:
            return []
        try:
            return list(call(*args))
        except ParseError:  # the handshake could not be read; the flow is still DICOM over TLS
            self._tls = None
            return []

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        self._bytes[direction] += len(data)
        return self._inner(self._tls and self._tls.feed, direction, data, ts_ns)

    def gap(self, direction: int, length: int, ts_ns: int) -> list[Event]:
        self._bytes[direction] += length
        return self._inner(self._tls and self._tls.gap, direction, length, ts_ns)

    def close(self, ts_ns: int) -> list[Event]:
        events = self._inner(self._tls and self._tls.close, ts_ns)
        events.append(
            DicomOverTls(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                bytes_c2s=self._bytes[0],
                bytes_s2c=self._bytes[1],
            )
        )
        return events
