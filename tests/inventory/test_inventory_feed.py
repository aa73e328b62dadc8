"""The feed's shortcuts (repeat signatures, per-pair and per-class lookups) never hide news."""

from __future__ import annotations

from medsentry.events.base import Endpoints
from medsentry.events.flow import FlowRecord, ProtocolDetected
from medsentry.events.hl7 import Hl7Message, Hl7Observation
from medsentry.events.identity import DnsMessage, DnsQuestion, DnsRecord
from medsentry.inventory.observe import Observer

T0 = 1_767_261_600_000_000_000
S = 1_000_000_000
MONITOR, GATEWAY = "00:09:fb:00:00:01", "00:06:5b:00:00:02"
ENDS = Endpoints(
    client="10.20.0.11",
    server="10.10.0.5",
    client_port=40001,
    server_port=2575,
    client_mac=MONITOR,
    server_mac=GATEWAY,
)


def hl7(t: int, **over) -> Hl7Message:
    fields = {
        "ts_ns": T0 + t * S,
        "flow_id": "0000000000000001",
        "endpoints": ENDS,
        "direction": 0,
        "field_separator": "|",
        "encoding_characters": "^~\\&",
        "sending_application": "MONITOR",
        "sending_facility": "ICU",
        "receiving_application": "GATEWAY",
        "receiving_facility": "HOSP",
        "message_type": "ORU",
        "trigger_event": "R01",
        "observations": [Hl7Observation(code="8867-4"), Hl7Observation(code="59408-5")],
    }
    fields.update(over)
    return Hl7Message(**fields)


def test_a_field_that_changes_later_in_a_flow_still_reaches_the_device() -> None:
    obs = Observer()
    obs.feed(
        [
            hl7(0),
            hl7(1),  # a repeat
            hl7(2, sending_facility="CCU"),  # the monitor moved
            hl7(3, observations=[Hl7Observation(code="8867-4"), Hl7Observation(code="8310-5")]),
            hl7(4, observations=[]),  # no OBX: another shape of message
            hl7(5, phi_segments=["PID"]),
            hl7(6, direction=1, message_type="ACK", trigger_event=None, ack_code="AA",
                sending_application="GATEWAY", sending_facility="HOSP",
                receiving_application="MONITOR", receiving_facility="CCU", observations=[]),
        ]
    )  # fmt: skip
    devices, _ = obs.resolve()
    monitor, gateway = devices[f"mac:{MONITOR}"], devices[f"mac:{GATEWAY}"]
    assert monitor.observations["hl7.facility"] == {"ICU": T0, "CCU": T0 + 2 * S}
    assert monitor.observations["hl7.observation"] == {
        "8867-4": T0,
        "59408-5": T0,
        "8310-5": T0 + 3 * S,
    }
    assert monitor.phi_ns == gateway.phi_ns == T0 + 5 * S
    assert monitor.last_ns == gateway.last_ns == T0 + 6 * S
    assert gateway.observations["hl7.application"] == {"GATEWAY": T0}


def test_events_the_inventory_ignores_are_not_counted() -> None:
    obs = Observer()
    seen = ProtocolDetected(ts_ns=T0, flow_id="1", protocol="hl7-mllp", method="port", confidence=1)
    obs.feed([seen, hl7(0), seen])  # the first of its class, and a later one
    obs.feed([seen, hl7(1), hl7(2)])
    assert obs.events == 3


def test_an_endpoint_written_two_ways_is_one_and_a_group_mac_is_none() -> None:
    obs = Observer()
    flows = [
        FlowRecord(
            ts_ns=T0 + i * S,
            last_ns=T0 + i * S + S // 2,
            flow_id=str(i),
            transport="udp",
            ip_version=4,
            client="10.20.0.11",
            server=server,
            client_mac=mac,
            server_mac=smac,
            server_port=123,
            packets_s2c=1,
            app_protocol="ntp",
        )
        for i, (mac, server, smac) in enumerate(
            [
                (MONITOR, "10.10.0.5", GATEWAY),
                (MONITOR.upper(), "10.10.0.5", GATEWAY),
                (MONITOR, "224.0.1.1", "01:00:5e:00:01:01"),  # NTP multicast: no server end
            ]
        )
    ]
    obs.feed(flows)
    assert set(obs.pairs) == {(MONITOR, "10.20.0.11"), (GATEWAY, "10.10.0.5")}
    monitor = obs.pairs[MONITOR, "10.20.0.11"]
    assert (monitor.first_ns, monitor.last_ns) == (T0, T0 + 2 * S + S // 2)
    assert obs.pairs[GATEWAY, "10.10.0.5"].listening == {"udp/123": T0}


def test_a_pointer_name_outranks_an_address_name_whichever_comes_first() -> None:
    ends = Endpoints(client="10.20.0.70", server="10.10.0.3", client_port=5300, server_port=53,
                     client_mac="00:12:21:00:00:01", server_mac=GATEWAY,
                     transport="udp")  # fmt: skip

    def answer(i: int, name: str, rr: DnsRecord) -> DnsMessage:
        return DnsMessage(ts_ns=T0 + i * S, flow_id=str(i), endpoints=ends, protocol="dns", id=i,
                          response=True, questions=[DnsQuestion(name=name, qtype=rr.rtype)],
                          answers=[rr])  # fmt: skip

    def a(i: int, name: str, ip: str) -> DnsMessage:
        return answer(i, name, DnsRecord(name=name, rtype=1, ttl=60, data=ip))

    def ptr(i: int, ip: str, name: str) -> DnsMessage:
        rev = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
        return answer(i, rev, DnsRecord(name=rev, rtype=12, ttl=60, data=name))

    obs = Observer()
    obs.feed(
        [
            a(1, "pump-1.example", "10.20.0.5"),
            a(2, "pump-one.example", "10.20.0.5"),  # a second A name: the first stays
            ptr(3, "10.20.0.5", "pump-1.ward.example"),  # a PTR name replaces an A name
            ptr(4, "10.20.0.6", "pump-2.ward.example"),
            a(5, "pump-2.example", "10.20.0.6"),  # ... and is not replaced by one
            a(6, "cdn.example.com", "93.184.216.34"),  # an internet host is named by none
        ]
    )
    assert obs.dns_names == {
        "10.20.0.5": (3, "pump-1.ward.example", T0 + 3 * S),
        "10.20.0.6": (3, "pump-2.ward.example", T0 + 4 * S),
    }
