"""Tuya local protocol discovery: nDPI's real capture of 13 Tuya devices (protocol 3.3, the
JSON encrypted under the platform's fixed key) read flow for flow as nDPI labels them; a
3.1 broadcast in clear; CRC, suffix and key checks; the inventory; hostile bytes."""

from __future__ import annotations

import contextlib
import re
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import ctx_for, flows

from medsentry.events import encode_json
from medsentry.events.flow import FlowRecord
from medsentry.events.identity import TuyaDiscovery
from medsentry.pipeline import Pipeline, ScanConfig
from medsentry.protocols import tuya
from medsentry.protocols.base import ParseError
from medsentry.protocols.tuya import TuyaDissector


def _events(capture: Path) -> list:
    out: list = []
    Pipeline(ScanConfig()).scan_files([capture], out.extend)
    return out


def test_ndpis_tuya_capture_flow_for_flow(ndpi_pcaps: Path) -> None:
    cap = ndpi_pcaps / "tuya_lp.pcap"
    events = _events(cap)
    ours = {e.flow_id for e in events if isinstance(e, FlowRecord) and e.app_protocol == "tuya-lp"}
    expected = (ndpi_pcaps.parent / "result" / "tuya_lp.pcap.out").read_text()
    assert len(ours) == len(re.findall(r"\[proto: [\d.]+/TuyaLP\]", expected)) == 13
    found = [e for e in events if isinstance(e, TuyaDiscovery)]
    assert len(found) == 13  # one per device: the repeats of each broadcast are not reported
    for e in found:  # the JSON decrypted: the device states the address it sends from
        assert e.announced_ip == e.endpoints.client and e.encrypted
        assert e.protocol_version == "3.3" and re.fullmatch(r"key[0-9a-z]{13}", e.product_key)
        assert re.fullmatch(r"[0-9a-z]{20,22}", e.device_id)
    assert {e.product_key for e in found} == {
        "keyxfhf7ryk8ftcx", "keyvtdmgqcsh5hug", "key8u54q9dtru5jw", "keyvaewvc4cwqh88",
    }  # fmt: skip


def _frame(command: int, payload: bytes) -> bytes:
    head = tuya.PREFIX + (7).to_bytes(4, "big") + command.to_bytes(4, "big")
    head += (len(payload) + 8).to_bytes(4, "big")
    crc = zlib.crc32(head + payload).to_bytes(4, "big")
    return head + payload + crc + tuya.SUFFIX


def test_a_cleartext_31_broadcast_and_the_integrity_checks() -> None:
    body = b'{"ip":"10.0.0.9","gwId":"bf0000000000000000aa","active":2,"ability":0,'
    body += b'"mode":0,"encrypt":false,"productKey":"keyabcdefghijklm","version":"3.1"}'
    frame = _frame(tuya.UDP, b"\x00\x00\x00\x00" + body)
    (e,) = TuyaDissector(ctx_for()).feed(0, frame, 1)
    assert (e.device_id, e.product_key, e.protocol_version, e.encrypted) == (
        "bf0000000000000000aa", "keyabcdefghijklm", "3.1", False,
    )  # fmt: skip
    broken = bytearray(frame)
    broken[40] ^= 1  # the JSON changed: the CRC-32 no longer matches
    with pytest.raises(ParseError, match="CRC"):
        TuyaDissector(ctx_for()).feed(0, bytes(broken), 1)
    with pytest.raises(ParseError, match="suffix"):
        TuyaDissector(ctx_for()).feed(0, frame[:-1] + b"\x00", 1)
    # command 0x13 whose payload is not under the fixed key
    with pytest.raises(ParseError, match=r"fixed key|JSON"):
        TuyaDissector(ctx_for()).feed(0, _frame(tuya.UDP_NEW, bytes(4) + bytes(range(48))), 1)
    # a control frame (under the device's own key) is not read
    assert TuyaDissector(ctx_for()).feed(0, _frame(0x07, bytes(36)), 1) == []


def test_the_inventory_calls_them_smart_home_devices(ndpi_pcaps: Path, tmp_path: Path) -> None:
    from medsentry.inventory.engine import InventoryEngine
    from medsentry.inventory.store import load_devices
    from medsentry.store import open_store

    eng = InventoryEngine()
    eng.feed(_events(ndpi_pcaps / "tuya_lp.pcap"))
    with open_store(f"sqlite:///{tmp_path / 'inv.db'}") as store:
        eng.finish(store, "tuya")
        devices = [d for d in load_devices(store) if "tuya-device" in d.roles]
    assert len(devices) == 13
    for d in devices:
        assert d.category is not None and d.category.value == "iot.smart-home"
        assert any(e.rule == "tuya.device" for e in d.category.evidence)


_SEED: list[bytes] = []


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 200), st.binary(min_size=1, max_size=8))
def test_hostile_bytes_give_events_or_a_parse_error(ndpi_pcaps: Path, at: int, flip: bytes) -> None:
    if not _SEED:
        flow = next(f for f in flows(ndpi_pcaps / "tuya_lp.pcap") if f.transport == "udp")
        _SEED.append(flow.items[0][1])
    good = _SEED[0]
    broken = bytearray(good)
    for i, x in enumerate(flip):
        broken[(at + i) % len(broken)] ^= x
    for data in (bytes(broken), good[:at]):
        with contextlib.suppress(ParseError):
            for ev in TuyaDissector(ctx_for()).feed(0, data, 1):
                encode_json(ev)
