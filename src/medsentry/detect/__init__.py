"""Detection: rules, behavioural baselines and online models over events -> alerts.

Kept free of imports (the store schema imports `medsentry.detect.tables`); see `base` for the
Detector interface and the Alert record, `engine` for `DetectionEngine`.
"""
