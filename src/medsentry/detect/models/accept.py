"""Accepting an IP-to-MAC binding change: the seen MAC becomes the bound one, the alert closes.

A replaced network card, a re-imaged monitor or a DHCP re-assignment makes
`net.flow_binding_mismatch` (and the relay alert, which includes it) fire for every flow of the
address until an analyst takes the new binding in. `medsentry baseline accept ALERT_ID`
reaches here for those alerts (see `medsentry.detect.accept`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medsentry.detect.base import STATUS_CLOSED, Alert
from medsentry.detect.models.flow import FlowAnomalyDetector, FlowRecordAnomalyDetector
from medsentry.detect.store import load_states, set_status, update_detector_state
from medsentry.errors import InputError

if TYPE_CHECKING:
    from medsentry.store import Store

# rule id -> the detector that holds its bindings
BINDING_RULES: dict[str, type[FlowAnomalyDetector]] = {
    FlowAnomalyDetector.binding_rule_id: FlowAnomalyDetector,
    FlowAnomalyDetector.relay_rule_id: FlowAnomalyDetector,
    FlowRecordAnomalyDetector.binding_rule_id: FlowRecordAnomalyDetector,
    FlowRecordAnomalyDetector.relay_rule_id: FlowRecordAnomalyDetector,
}


def accept_binding(store: Store, alert: Alert, *, by: str, reason: str) -> dict[str, Any]:
    """Bind the alert's IP to the MAC it was seen with; ledger it; close the alert."""
    cls = BINDING_RULES.get(alert.rule_id)
    if cls is None:
        raise InputError(f"alert {alert.alert_id} ({alert.rule_id}) is not a binding change")
    ip, mac = alert.detail.get("ip"), alert.detail.get("seen_mac")
    if not isinstance(ip, str) or not isinstance(mac, str):
        raise InputError(f"alert {alert.alert_id}: detail has no ip / seen_mac to accept")
    det = cls()
    state = load_states(store).get(cls.detector_id)
    if state is not None:
        det.load_state(state)
    det.accept_binding(ip, mac)
    update_detector_state(store, cls.detector_id, det.state())
    from medsentry.ledger import record

    row = {
        "alert_id": alert.alert_id,
        "device_id": alert.device_id,
        "dimension": "ip_mac_binding",
        "values": 1,
    }
    record("baseline.accepted", {**row, "ip": ip, "mac": mac, "by": by, "reason": reason}, by)
    if alert.status != STATUS_CLOSED:
        set_status(store, alert.alert_id, STATUS_CLOSED, by, reason)
    return {**row, "status": STATUS_CLOSED}
