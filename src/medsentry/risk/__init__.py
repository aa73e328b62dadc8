"""Risk: CVSS scores computed from vectors and an explainable device risk score."""
