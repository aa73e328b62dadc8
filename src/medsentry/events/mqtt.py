"""MQTT events (OASIS MQTT 3.1.1 and 5.0): session identity and topics, never payloads.

Client ids, will topics, topic names and filters are templates: a level that may name a patient
or a record is "{id}" (`ward3/bed12/patient/{id}/spo2`), wildcards stay (protocols/template.py).
"""

from __future__ import annotations

from medsentry.events.base import Endpoints, Event


class MqttConnect(Event, tag="mqtt_connect", frozen=True, kw_only=True):
    """CONNECT (MQTT 3.1.1 §3.1, 5.0 §3.1)."""

    flow_id: str
    endpoints: Endpoints
    protocol_name: str
    protocol_level: int  # 3 = 3.1, 4 = 3.1.1, 5 = 5.0
    client_id: str
    clean_session: bool
    keepalive: int
    username_present: bool = False
    password_present: bool = False
    will_present: bool = False
    will_topic: str | None = None


class MqttConnack(Event, tag="mqtt_connack", frozen=True, kw_only=True):
    """CONNACK (MQTT 3.1.1 §3.2, 5.0 §3.2): return code (3.1.1) or reason code (5.0)."""

    flow_id: str
    endpoints: Endpoints
    return_code: int
    accepted: bool
    session_present: bool = False


class MqttSubscribe(Event, tag="mqtt_subscribe", frozen=True, kw_only=True):
    """SUBSCRIBE topic filters (MQTT 3.1.1 §3.8); wildcards (+, #) flagged."""

    flow_id: str
    endpoints: Endpoints
    topic_filters: list[str]
    wildcard: bool = False
    multi_level_wildcard: bool = False  # a "#" filter: everything below
    max_qos: int = 0


class MqttPublish(Event, tag="mqtt_publish", frozen=True, kw_only=True):
    """The first PUBLISH of a topic in one direction of a flow (MQTT 3.1.1 §3.3)."""

    flow_id: str
    endpoints: Endpoints
    topic: str
    from_client: bool
    qos: int = 0
    retain: bool = False
    payload_length: int = 0
