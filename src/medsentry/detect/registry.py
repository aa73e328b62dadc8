"""The full detector set and the installation's detection settings (`detect.yaml`).

`$MEDSENTRY_HOME/detect.yaml` (optional):

    learning_period_s: 86400          # default: data/detect_baselines.yaml learning_period_s
    outputs:                          # where raised alerts go besides the store
      - jsonl: /var/log/medsentry/alerts.jsonl
      - syslog: udp://siem.example:514
      - cef: tcp://arcsight.example:6514
      - webhook: https://soar.example/hooks/medsentry
"""

from __future__ import annotations

from typing import Any

from medsentry.detect.base import Detector
from medsentry.detect.baseline import BaselineDetector, load_baseline_config
from medsentry.detect.rules import build_rules
from medsentry.errors import ConfigError


def model_detectors() -> list[Detector]:
    """The anomaly models (medsentry.detect.models), when that package provides them."""
    try:
        from medsentry.detect import models
    except ImportError:
        return []
    factory = getattr(models, "default_models", None)
    return list(factory()) if factory is not None else []


def default_detectors(*, models: bool = True) -> list[Detector]:
    """Every rule of data/detect_rules.yaml, the behavioural baselines, and the models."""
    out: list[Detector] = [*build_rules(), BaselineDetector()]
    if models:
        out += model_detectors()
    return out


def detect_config() -> dict[str, Any]:
    import yaml

    from medsentry import yamlfile
    from medsentry.paths import data_dir

    path = data_dir() / "detect.yaml"
    if not path.exists():
        return {}
    try:
        doc = yamlfile.load(path.read_bytes()) or {}  # bad UTF-8: a YAMLError
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: must be a mapping")
    unknown = set(doc) - {"learning_period_s", "outputs"}
    if unknown:
        raise ConfigError(f"{path}: unknown settings {sorted(unknown)}")
    lp = doc.get("learning_period_s")
    # YAML `true` is a bool, which Python counts as the int 1: not a learning period either
    if lp is not None and (not isinstance(lp, int) or isinstance(lp, bool) or lp < 0):
        raise ConfigError(f"{path}: learning_period_s must be a non-negative integer")
    return doc


def learning_ns(cfg: dict[str, Any] | None = None, override_s: float | None = None) -> int:
    if override_s is not None:
        return int(override_s * 1e9)
    cfg = detect_config() if cfg is None else cfg
    s = cfg.get("learning_period_s")
    if s is None:
        s = load_baseline_config().learning_period_s
    return int(s * 1_000_000_000)
