"""MQTT: paho-mqtt clients (3.1.1 and 5.0) against the Mosquitto broker on 127.0.0.1:1883,
captured with tcpdump, cross-checked with tshark's MQTT dissector; fuzzed."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import ctx_for, flows, run, tcpdump, tshark

from medsentry.events import encode_json
from medsentry.events.credentials import CleartextCredentials
from medsentry.events.mqtt import MqttConnack, MqttConnect, MqttPublish, MqttSubscribe
from medsentry.protocols.base import ParseError
from medsentry.protocols.mqtt import MqttDissector
from medsentry.protocols.template import client_id_template

# xdist_group: the modules that build or share these live captures (same loopback addresses,
# ports and MQTT client ids) run on one worker, so two builds never overlap
pytestmark = pytest.mark.xdist_group("net_live_captures")

BROKER = ("127.0.0.1", 1883)
CLIENT_ADDR = "127.0.0.77"  # own source address: other tests' MQTT traffic stays out of the capture
VITALS = b'{"patient":"Zebediah Quixote","hr":72}'  # a payload that must never surface


def _broker_up() -> bool:
    try:
        socket.create_connection(BROKER, timeout=1).close()
        return True
    except OSError:
        return False


MY_TOPICS = ("ward7/bed3/vitals", "ward7/bed4/vitals")  # what mqtt_capture publishes


@pytest.fixture(scope="module")
def mqtt_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _broker_up():
        pytest.skip("no MQTT broker on 127.0.0.1:1883 (Mosquitto)")
    pcap = tmp_path_factory.mktemp("mqtt") / "mqtt.pcap"
    with tcpdump(pcap, f"tcp port 1883 and host {CLIENT_ADDR}"):
        for proto, cid in ((paho.MQTTv311, "monitor-311"), (paho.MQTTv5, "monitor-5")):
            c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, protocol=proto)
            c.username_pw_set("ward7-gw", "hunter2")
            c.will_set("ward7/status", b"offline")
            c.connect(*BROKER, keepalive=33, bind_address=CLIENT_ADDR)
            c.loop_start()
            c.subscribe([("ward7/+/vitals", 1), ("#", 0)])
            time.sleep(0.2)
            c.publish("ward7/bed3/vitals", VITALS, qos=1).wait_for_publish(5)
            c.publish("ward7/bed3/vitals", VITALS, qos=0)
            c.publish("ward7/bed4/vitals", VITALS * 300, qos=0)
            time.sleep(0.4)
            c.disconnect()
            c.loop_stop()
    return pcap


def _flows(pcap: Path) -> list[list]:
    return [
        run(MqttDissector(ctx_for(fl.endpoints)), fl.items)
        for fl in sorted(flows(pcap), key=lambda f: f.items[0][2])
        if fl.server[1] == 1883 and fl.items
    ]


def test_connect_subscribe_publish(mqtt_capture: Path) -> None:
    per_flow = _flows(mqtt_capture)
    assert len(per_flow) == 2
    for ev, (level, cid) in zip(per_flow, ((4, "monitor-311"), (5, "monitor-5")), strict=True):
        (conn,) = [e for e in ev if isinstance(e, MqttConnect)]
        assert (conn.protocol_level, conn.client_id, conn.keepalive) == (level, cid, 33)
        assert conn.username_present and conn.password_present and conn.clean_session
        assert conn.will_topic == "ward7/status"
        (ack,) = [e for e in ev if isinstance(e, MqttConnack)]
        assert ack.accepted
        (cred,) = [e for e in ev if isinstance(e, CleartextCredentials)]
        assert cred.username_hash == ctx_for().phi_hash("ward7-gw") and cred.password_sent
        assert cred.accepted is True
        (sub,) = [e for e in ev if isinstance(e, MqttSubscribe)]
        assert sub.topic_filters == ["ward7/+/vitals", "#"] and sub.multi_level_wildcard
        # each topic once per direction: the client's publishes and the broker's deliveries (the
        # "#" subscription also delivers what other tests publish on the shared broker meanwhile,
        # e.g. the controls tests' ward7/bed3/status: only this test's own topics are counted)
        pubs = [
            (p.topic, p.from_client)
            for p in ev
            if isinstance(p, MqttPublish) and p.topic in MY_TOPICS
        ]
        assert sorted(pubs) == sorted(
            [
                ("ward7/bed3/vitals", True),
                ("ward7/bed4/vitals", True),
                ("ward7/bed3/vitals", False),
                ("ward7/bed4/vitals", False),
            ]
        )
        blob = b"".join(encode_json(e) for e in ev)
        assert b"Zebediah" not in blob and b"hunter2" not in blob and b"ward7-gw" not in blob


def test_cross_check_with_tshark(mqtt_capture: Path) -> None:
    rows = tshark(mqtt_capture, "mqtt.msgtype == 1", "mqtt.clientid", "mqtt.ver", "mqtt.kalive")
    conns = [e for ev in _flows(mqtt_capture) for e in ev if isinstance(e, MqttConnect)]
    assert [(r[0], int(r[1]), int(r[2])) for r in rows] == [
        (c.client_id, c.protocol_level, c.keepalive) for c in conns
    ]
    topics = tshark(mqtt_capture, "mqtt.msgtype == 3", "mqtt.topic")
    seen = {t for r in topics for t in r[0].split("|")}
    ours = {e.topic for ev in _flows(mqtt_capture) for e in ev if isinstance(e, MqttPublish)}
    assert ours == seen
    subs = tshark(mqtt_capture, "mqtt.msgtype == 8", "mqtt.topic")
    assert [r[0].split("|") for r in subs] == [
        e.topic_filters for ev in _flows(mqtt_capture) for e in ev if isinstance(e, MqttSubscribe)
    ]


def test_ndpi_mqtt_capture(ndpi_pcaps: Path) -> None:
    pcap = ndpi_pcaps / "mqtt.pcap"
    ev = [
        e
        for fl in flows(pcap)
        if fl.server[1] == 1883
        for e in run(MqttDissector(ctx_for(fl.endpoints)), fl.items, strict=False)
    ]
    rows = tshark(pcap, "mqtt.msgtype == 1", "mqtt.clientid")
    # client ids are stored as templates: "P47775ID170W2120" is a serial, "{id}"
    assert sorted(e.client_id for e in ev if isinstance(e, MqttConnect)) == sorted(
        client_id_template(r[0]) for r in rows
    )


def test_split_anywhere_gives_same_events(mqtt_capture: Path) -> None:
    for fl in flows(mqtt_capture):
        whole = run(MqttDissector(ctx_for(fl.endpoints)), fl.items)
        tiny = [(d, data[i : i + 1], ts) for d, data, ts in fl.items for i in range(len(data))]
        assert run(MqttDissector(ctx_for(fl.endpoints)), tiny) == whole


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.binary(max_size=300)), max_size=10))
def test_fuzz_any_bytes(chunks: list[tuple[int, bytes]]) -> None:
    d = MqttDissector(ctx_for())
    try:
        for direction, data in chunks:
            d.feed(direction, data, 1)
        d.close(2)
    except ParseError:
        pass
    assert all(len(s.buf) <= 256 * 1024 + 8 for s in d.sides)
