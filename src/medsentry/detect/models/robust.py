"""Online robust z-score: per-feature streaming median and spread, river's method set.

Each feature keeps two numbers. The median is tracked by stochastic approximation ("frugal
streaming", Ma, Muthukrishnan & Sandler, 2014): it moves a small step towards every value,
m += eta * sign(x - m), with eta = `rate` times the current spread, so it settles at the
feature's own resolution and one outlier moves it by one step at most. The spread is the
mean absolute deviation from that median, averaged over the whole stream at first and then
exponentially (weight `alpha`), with each deviation clipped at `clip` spreads so an outlier
counts as a bounded one. A record's score is the root mean square of its z-scores,
|x - m| / (1.2533 spread) (1.2533 = sqrt(pi/2): mean absolute deviation -> standard deviation
for a normal distribution), each clipped at `clip` so that one wild feature cannot outvote
the rest -- an anomaly here is a record unusual in many respects at once.

A foil for the Half-Space Trees with the same interface: two floats per feature, no window,
no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# sqrt(pi / 2): mean absolute deviation -> standard deviation for a normal distribution
MEANAD_TO_SD = math.sqrt(math.pi / 2)


class RobustZScore:
    def __init__(
        self,
        features: Sequence[str],
        *,
        rate: float = 0.01,
        alpha: float = 0.01,
        clip: float = 10.0,
        min_scale: float = 0.05,
    ) -> None:
        if not features:
            raise ValueError("RobustZScore needs at least one feature")
        self.features = list(features)
        self.rate = rate
        self.alpha = alpha
        self.clip = clip
        self.min_scale = min_scale
        self.median = [0.0] * len(self.features)
        self.spread = [0.0] * len(self.features)  # mean absolute deviation
        self.seen = 0

    @property
    def ready(self) -> bool:
        return self.seen >= 2

    def scale(self, i: int) -> float:
        return max(self.spread[i] * MEANAD_TO_SD, self.min_scale)

    def learn_one(self, x: Mapping[str, float]) -> None:
        w = max(self.alpha, 1.0 / (self.seen + 1))
        for i, f in enumerate(self.features):
            v = float(x.get(f, 0.0))
            if self.seen == 0:
                self.median[i] = v
                continue
            scale = self.scale(i)
            m = self.median[i]
            self.median[i] = m + self.rate * scale * ((v > m) - (v < m))
            dev = min(abs(v - self.median[i]), self.clip * scale)
            self.spread[i] += w * (dev - self.spread[i])
        self.seen += 1

    def score_one(self, x: Mapping[str, float]) -> float:
        if not self.ready:
            return 0.0
        total = 0.0
        for i, f in enumerate(self.features):
            z = min(abs(float(x.get(f, 0.0)) - self.median[i]) / self.scale(i), self.clip)
            total += z * z
        return math.sqrt(total / len(self.features))

    def to_state(self) -> dict[str, Any]:
        return {
            "algorithm": "robust-z",
            "features": self.features,
            "rate": self.rate,
            "alpha": self.alpha,
            "clip": self.clip,
            "min_scale": self.min_scale,
            "median": self.median,
            "spread": self.spread,
            "seen": self.seen,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RobustZScore:
        if not isinstance(state, Mapping) or state.get("algorithm") != "robust-z":
            raise ValueError("not a robust z-score state")
        try:
            m = cls(
                state["features"],
                rate=float(state["rate"]),
                alpha=float(state["alpha"]),
                clip=float(state["clip"]),
                min_scale=float(state["min_scale"]),
            )
            m.median = [float(v) for v in state["median"]]
            m.spread = [float(v) for v in state["spread"]]
            m.seen = int(state["seen"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"damaged robust z-score state ({exc})") from exc
        if len(m.median) != len(m.features) or len(m.spread) != len(m.features):
            raise ValueError("damaged robust z-score state (lengths differ)")
        return m
