"""A pynetdicom association captured from its middle, on an unusual port, on an ephemeral port
and on port 104.

pynetdicom's SCU and SCP (no PDU size limit, so the 230 KiB RGB image travels in one P-DATA-TF
over several segments) run a C-ECHO, three C-STOREs and a C-FIND on loopback while tcpdump
captures it. The capture is then cut so that it starts after the A-ASSOCIATE-AC, with no TCP
handshake (as tcpdump started mid-association would see it): at the client's first packet after
the AC, at the server's first P-DATA-TF, and inside the 230 KiB P-DATA-TF (so the client's
first 180 KiB are no PDU header). Each cut is scanned by the real pipeline: the flow must be
identified as DICOM by its P-DATA-TF signature (PS3.8 §9.3.5), whatever the port, its SCP be
the server (on an ephemeral port, like the SCU's, only the DIMSE command of the first PDU each
side sent tells: a -RQ comes from the association requestor, a -RSP from the acceptor), and every
DIMSE message that starts after the cut reported as the full capture reports it, with the same
time: that of the packet that carried it, not of the later one whose PDU header confirmed the
PDU boundary the dissector searched for.
"""

from __future__ import annotations

import json
import socket
import struct
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from loopcap import capture_lo, free_port, scan
from pydicom.data import get_testdata_file

from freeport import ABOVE
from medsentry.events import encode_json
from medsentry.events.dicom import (
    DicomAssociateAccept,
    DicomAssociateRequest,
    DicomCommand,
    DicomDataset,
    DicomSession,
)
from medsentry.events.flow import ProtocolDetected

pytestmark = pytest.mark.slow

FILES = ["CT_small.dcm", "examples_rgb_color.dcm", "MR_small.dcm"]  # 38 KiB, 230 KiB, 9 KiB
# fields that differ, by design, between a flow seen whole and the same flow seen from its middle
UNSEEN = {
    "ts_ns",
    "flow_id",
    "endpoints",
    "seen_from_middle",
    "transfer_syntax",
    "transfer_syntax_inferred",
    "encoding_inferred",
}
ENCODINGS = {  # PS3.5 §A.1, §A.2: the data sets here have native pixel data or none
    "1.2.840.10008.1.2": "implicit VR little endian",
    "1.2.840.10008.1.2.1": "explicit VR little endian",
}


def exchange(tmp: Path, port: int) -> tuple[Path, list[pydicom.Dataset]]:
    """C-ECHO, C-STORE of FILES, C-FIND (two matches) and release, captured on lo."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind, Verification

    def on_find(event: evt.Event):  # type: ignore[no-untyped-def]
        for n in (1, 2):
            match = pydicom.Dataset()
            match.QueryRetrieveLevel = "PATIENT"
            match.PatientID = f"MID-{n}"
            yield 0xFF00, match

    sent = [pydicom.dcmread(get_testdata_file(f)) for f in FILES]
    scp = AE(ae_title="PACS_SCP")
    scp.maximum_pdu_size = 0  # PS3.8 §D.1: 0 = no limit
    scp.supported_contexts = AllStoragePresentationContexts
    scp.add_supported_context(Verification)
    scp.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
    handlers = [(evt.EVT_C_STORE, lambda event: 0x0000), (evt.EVT_C_FIND, on_find)]
    with capture_lo(tmp / f"full{port}.pcap", [port]) as pcap:
        server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
        try:
            scu = AE(ae_title="MODALITY_7")
            scu.maximum_pdu_size = 0
            for ds in sent:
                scu.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
            scu.add_requested_context(Verification)
            scu.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
            assoc = scu.associate("127.0.0.1", port, ae_title="PACS_SCP")
            assert assoc.is_established
            assert assoc.send_c_echo().Status == 0
            for ds in sent:
                assert assoc.send_c_store(ds).Status == 0
            query = pydicom.Dataset()
            query.QueryRetrieveLevel = "PATIENT"
            query.PatientID = "*"
            statuses = [
                s.Status
                for s, _ in assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind)
            ]
            assert statuses == [0xFF00, 0xFF00, 0x0000]
            assoc.release()
        finally:
            server.shutdown()
    return pcap, sent


def records(pcap: Path, port: int) -> tuple[bytes, list[bytes], list[tuple[bool, int, bytes]]]:
    """pcap header, records, and per record (client to server, stream offset, TCP payload)."""
    raw = pcap.read_bytes()
    assert struct.unpack_from("<I", raw, 20)[0] == 1  # Ethernet (Linux lo)
    recs, pos = [], 24
    while pos < len(raw):
        incl = struct.unpack_from("<I", raw, pos + 8)[0]
        recs.append(raw[pos : pos + 16 + incl])
        pos += 16 + incl
    out, isn = [], {}
    for rec in recs:
        ip = rec[16 + 14 :]
        tcp = ip[(ip[0] & 15) * 4 : struct.unpack_from(">H", ip, 2)[0]]
        _, dport, seq = struct.unpack_from(">HHI", tcp)
        c2s = dport == port
        isn.setdefault(c2s, (seq + 1) if tcp[13] & 0x02 else seq)  # RFC 9293 §3.4
        out.append((c2s, (seq - isn[c2s]) & 0xFFFFFFFF, tcp[(tcp[12] >> 4) * 4 :]))
    return raw[:24], recs, out


def cut_points(payloads: list[tuple[bool, int, bytes]]) -> dict[str, int]:
    """The record each cut starts at (all after the A-ASSOCIATE-AC, so no SYN is kept)."""
    ac = next(i for i, (c2s, _, p) in enumerate(payloads) if not c2s and p[:1] == b"\x02")
    first_s2c = next(i for i, (c2s, _, p) in enumerate(payloads) if i > ac and p and not c2s)
    assert payloads[first_s2c][2][:1] == b"\x04"  # the C-ECHO-RSP's P-DATA-TF
    big = next(  # the RGB image's P-DATA-TF: PDU type 04H, length past 128 KiB
        (i, o)
        for i, (c2s, o, p) in enumerate(payloads)
        if c2s and p[:2] == b"\x04\x00" and struct.unpack_from(">I", p, 2)[0] > 1 << 17
    )
    end = big[1] + 6 + struct.unpack_from(">I", payloads[big[0]][2], 2)[0]
    inside = next(
        i for i, (c2s, o, p) in enumerate(payloads) if i > big[0] and c2s and p and o < end - 1
    )
    assert payloads[inside][1] > big[1] and end - payloads[inside][1] > 1 << 17
    return {"after the AC": ac + 1, "at the server's P-DATA-TF": first_s2c, "inside": inside}


def norm(events: list) -> Counter[str]:
    """DIMSE commands and data sets, without the fields a mid-association view cannot have."""
    return Counter(key for key, _ in timed(events))


def timed(events: list) -> list[tuple[str, int]]:
    """(norm's key, ts_ns) of each DIMSE command and data set, in the order reported."""
    return [(key, e.ts_ns) for key, e in keyed(events)]


def keyed(events: list) -> list[tuple[str, DicomCommand | DicomDataset]]:
    """(norm's key, event) of each DIMSE command and data set, in the order reported."""
    out = []
    for e in events:
        if isinstance(e, DicomCommand | DicomDataset):
            rec = {k: v for k, v in json.loads(encode_json(e)).items() if k not in UNSEEN}
            out.append((json.dumps(rec, sort_keys=True), e))
    return out


def negotiated(events: list) -> dict[str, str | None]:
    """The transfer syntax of each data set (norm's key) of an association seen whole: the
    negotiated one, none inferred."""
    syntaxes = {}
    for key, e in keyed(events):
        if isinstance(e, DicomDataset):
            assert (e.transfer_syntax_inferred, e.encoding_inferred) == (None, None)
            syntaxes[key] = e.transfer_syntax
    return syntaxes


def check_inferred(events: list, syntaxes: dict[str, str | None], name: str) -> None:
    """Each data set seen without its A-ASSOCIATE-AC names, as inferred from its bytes, the
    transfer syntax the association had negotiated for it."""
    for key, e in keyed(events):
        if isinstance(e, DicomDataset):
            want = syntaxes[key]
            got = (e.transfer_syntax, e.transfer_syntax_inferred, e.encoding_inferred)
            assert got == (None, want, ENCODINGS[want]), (name, e.command)


def times_by_message(events: list) -> dict[str, list[int]]:
    """The times each message (norm's key: two C-FIND pending responses share one) has."""
    out: dict[str, list[int]] = {}
    for key, ts in timed(events):
        out.setdefault(key, []).append(ts)
    return out


def dicom_flow(events: list, port: int) -> tuple[ProtocolDetected, DicomSession]:
    sessions = [e for e in events if isinstance(e, DicomSession)]
    assert len(sessions) == 1, f"{len(sessions)} DICOM flows dissected"
    session = sessions[0]
    assert session.endpoints.server_port == port  # the SCP's side, though no SYN says so
    (proto,) = [e for e in events if isinstance(e, ProtocolDetected) and e.flow_id ==
                session.flow_id]  # fmt: skip
    return proto, session


def before_image_rsp(rec: dict, sent: list[pydicom.Dataset]) -> bool:
    """Whether the message was sent before the RGB image's C-STORE-RSP: what a capture that
    starts inside the image's data set cannot report (its command set came before the cut)."""
    ct, rgb = sent[0].SOPClassUID, sent[1].SOPClassUID
    if rec["kind"] == "dicom_dataset":
        return rec["sop_class_uid"] in (ct, rgb)
    sop = rec["affected_sop_class_uid"]
    return (
        rec["command"].startswith("C-ECHO")
        or sop == ct
        or (sop == rgb and rec["command"] == "C-STORE-RQ")
    )


def port_104() -> int:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as pynetdicom's server does
        try:
            s.bind(("127.0.0.1", 104))
        except OSError as exc:
            pytest.skip(f"cannot listen on port 104: {exc}")
    return 104


@pytest.mark.parametrize("where", ["unusual", "ephemeral", "104"])
def test_association_captured_from_its_middle(where: str, tmp_path: Path) -> None:
    if where == "104":
        port = port_104()
    else:  # ephemeral: the SCU's port is too, so no port class says which side serves
        port = free_port(span=ABOVE) if where == "ephemeral" else free_port()
    pcap, sent = exchange(tmp_path, port)
    header, recs, payloads = records(pcap, port)
    full = scan(pcap)
    proto, session = dicom_flow(full, port)
    assert proto.detail == "A-ASSOCIATE-RQ" and not session.seen_from_middle
    whole = norm(full)
    assert sum(whole.values()) == 18  # 12 command sets; 3 images, 1 query, 2 matches
    syntaxes = negotiated(full)
    # the images' contexts are explicit VR, the query's implicit VR (pynetdicom's first choice)
    assert sorted(set(syntaxes.values())) == sorted(ENCODINGS)
    early = Counter(k for k in whole if before_image_rsp(json.loads(k), sent))
    expected = {
        "after the AC": whole,
        "at the server's P-DATA-TF": whole - Counter(k for k in whole if '"C-ECHO-RQ"' in k),
        "inside": whole - early,
    }
    for name, start in cut_points(payloads).items():
        mid = tmp_path / f"mid{start}.pcap"
        mid.write_bytes(header + b"".join(recs[start:]))
        events = scan(mid)
        proto, session = dicom_flow(events, port)
        assert (proto.protocol, proto.method, proto.detail) == ("dicom", "signature", "P-DATA-TF")
        assert proto.confidence == (0.99 if port == 104 else 0.95), name  # port hint: +0.04
        assert session.seen_from_middle and not session.desynchronized, name
        skipped = session.resync_skipped_bytes  # the rest of the image's P-DATA-TF
        assert skipped > 1 << 17 if name == "inside" else skipped == 0, name
        assert not [
            e for e in events if isinstance(e, DicomAssociateRequest | DicomAssociateAccept)
        ]
        assert norm(events) == expected[name], name
        check_inferred(events, syntaxes, name)
        # each message has the time of the packet that carried it, as in the full capture:
        # the ones found by the PDU boundary search too (PS3.8 §9.3.1), which are only taken
        # once the next PDU's header has come in a later packet
        whole_times = times_by_message(full)
        for key, got_ts in times_by_message(events).items():
            want = whole_times[key][-len(got_ts) :]
            assert got_ts == want, (name, json.loads(key)["command"], got_ts, want)
        stores = [e for e in events if isinstance(e, DicomDataset) and e.command == "C-STORE-RQ"]
        for ds in sent:
            got = [s for s in stores if s.sop_class_uid == ds.SOPClassUID]
            if name == "inside" and ds is not sent[2]:
                assert not got, name  # its command set was before the cut
                continue
            (data,) = got
            assert (data.modality, data.manufacturer) == (ds.Modality, ds.get("Manufacturer"))
            assert data.seen_from_middle and not data.decode_error, name
            assert "PatientID" in data.phi_attributes
