"""Online unsupervised anomaly models behind the Detector interface.

- `hst.HalfSpaceTrees`: streaming Half-Space Trees (Tan, Ting & Liu 2011), river's method set.
- `flow.FlowAnomalyDetector` / `FlowRecordAnomalyDetector`: the trees over host-agnostic flow
  features (one model of all flows, and one per device category the inventory knows), plus
  the relay (adversary-in-the-middle) correlation with IP-to-MAC bindings.
- `vitals.VitalsIntegrityDetector`: impossible / inconsistent vital signs and an online model
  of the step between consecutive readings of a patient stream.

Every threshold is a quantile of learning-period scores, fixed when learning ends; every
model's state (trees, masses, limits, thresholds, bindings) is plain data stored by the engine.
"""

from __future__ import annotations

from medsentry.detect.base import Detector


def default_models() -> list[Detector]:
    """The anomaly-model detectors the engine runs beside the rules."""
    from medsentry.detect.models.flow import FlowAnomalyDetector, FlowRecordAnomalyDetector
    from medsentry.detect.models.vitals import VitalsIntegrityDetector

    return [FlowRecordAnomalyDetector(), FlowAnomalyDetector(), VitalsIntegrityDetector()]
