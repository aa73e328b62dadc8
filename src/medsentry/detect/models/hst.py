"""Half-Space Trees: a streaming, unsupervised anomaly detector (NumPy).

Tan, Ting & Liu, "Fast Anomaly Detection for Streaming Data", IJCAI 2011. An ensemble of
random perfect binary trees cuts the feature space in halves (each node splits one random
feature at the middle of its randomly perturbed work range, §3.1). Each node counts the
instances that reach it in the latest window (`l`); when a window of `window_size` instances
ends, the counts become the reference profile (`r`) and `l` restarts (§3.2). An instance's mass
is, per tree, `r[node] * 2**depth` at the deepest node on its path whose reference count is
above `size_limit` (or the leaf); few neighbours in the reference window -> small mass ->
anomalous. `score_one` returns river's normalisation, 1 - mass / max mass, in [0, 1].

Features are scaled to [0, 1] by `limits`; when none are given, the model learns them from its
first window (the min/max of each feature, widened by half their span) and builds the trees
then, replaying that window as its first reference. The whole state (trees, counts, limits)
is plain data: `to_state()` / `from_state()`.

`learn_many(X, scores)` is `score_one` then `learn_one` of each row in order, in one compiled
pass: the reference profile only changes at a window's end, which the pass follows row by row,
so the masses, scores and counts are those of the row-by-row calls, bit for bit.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsentry.jit import njit

# Minimum width of a learned feature range (in the feature's own units), so that a feature
# that was constant during the first window still has a work range around its value.
MIN_SPAN = 1.0


def _b64(a: np.ndarray) -> str:
    """An array as base64 of its zlib-compressed little-endian bytes (masses are sparse)."""
    return base64.b64encode(zlib.compress(np.ascontiguousarray(a).tobytes(), 6)).decode("ascii")


def _unb64(s: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(s)), dtype=dtype).reshape(shape).copy()


# Trees already grown, by (seed, n_trees, height, number of features): (feat, split).
_TREES: dict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray]] = {}


# --- compiled kernels: one pass down each tree, no per-node Python -----------------------------
@njit(cache=True, nogil=True)
def _hst_learn(u, feat, split, height, latest):  # pragma: no cover - compiled
    """§3.2 UpdateMass: add the instance to every node on its path (latest window)."""
    for t in range(feat.shape[0]):
        node = 0
        latest[t, 0] += 1
        for _ in range(height):
            node = 2 * node + (2 if u[feat[t, node]] >= split[t, node] else 1)
            latest[t, node] += 1


@njit(cache=True, nogil=True)
def _hst_mass(u, feat, split, height, ref, size_limit):  # pragma: no cover - compiled
    """§3.2 Score: per tree, r * 2**depth at the first node with r <= size_limit or a leaf."""
    total = 0.0
    for t in range(feat.shape[0]):
        node = 0
        depth = 0
        while True:
            m = ref[t, node]
            if m <= size_limit or depth == height:
                total += m * 2.0**depth
                break
            node = 2 * node + (2 if u[feat[t, node]] >= split[t, node] else 1)
            depth += 1
    return total


@njit(cache=True, nogil=True)
def _hst_unit(v, lo, hi, out):  # pragma: no cover - compiled
    """A feature vector in the unit cube of the trees: `(v - lo) / (hi - lo)`, clipped to
    [-1, 2], not to [0, 1]: the work ranges reach to [-1, 2], so a value beyond the learned
    limits still lands in a region of its own instead of the edge cell (NaN stays NaN)."""
    for j in range(v.shape[0]):
        u = (v[j] - lo[j]) / (hi[j] - lo[j])
        if u < -1.0:
            u = -1.0
        elif u > 2.0:
            u = 2.0
        out[j] = u


@njit(cache=True, nogil=True)
def _hst_score_raw(v, lo, hi, feat, split, height, ref, size_limit, max_mass):  # pragma: no cover
    """score_one on a raw feature vector: scaled, then 1 - mass / max mass."""
    u = np.empty(v.shape[0])
    _hst_unit(v, lo, hi, u)
    return 1.0 - _hst_mass(u, feat, split, height, ref, size_limit) / max_mass


@njit(cache=True, nogil=True)
def _hst_learn_scored(  # pragma: no cover - compiled
    X,
    lo,
    hi,
    feat,
    split,
    height,
    ref,
    latest,
    seen,
    window_size,
    windows,
    size_limit,
    max_mass,
    room,
    scores,
):
    """For each row in order, as `score_one` then `learn_one` would: while a reference window
    exists and `room` is left, its score goes to `scores`; then it is learned, and a full
    window becomes the reference. Returns (seen, windows, scores written).

    The trees are walked level by level, all trees at each level (their loads are independent,
    so they overlap), and the scoring path is the start of the learning path: one descent does
    both. Each tree's mass is `_hst_mass`'s, summed in tree order as there: the same floats."""
    n_trees = feat.shape[0]
    u = np.empty(X.shape[1])
    nodes = np.zeros(n_trees, dtype=np.int64)
    mass = np.zeros(n_trees)
    open_ = np.zeros(n_trees, dtype=np.bool_)  # still descending for the score
    n_scored = 0
    for i in range(X.shape[0]):
        _hst_unit(X[i], lo, hi, u)
        scoring = windows >= 1 and n_scored < room
        for t in range(n_trees):
            nodes[t] = 0
            latest[t, 0] += 1
            if scoring:
                m = ref[t, 0]
                if m <= size_limit or height == 0:
                    mass[t] = m * 1.0
                    open_[t] = False
                else:
                    open_[t] = True
        scale = 1.0  # 2**depth, exactly
        for depth in range(1, height + 1):
            scale *= 2.0
            for t in range(n_trees):
                node = nodes[t]
                node = 2 * node + (2 if u[feat[t, node]] >= split[t, node] else 1)
                nodes[t] = node
                latest[t, node] += 1
            if scoring:
                for t in range(n_trees):
                    if open_[t]:
                        m = ref[t, nodes[t]]
                        if m <= size_limit or depth == height:
                            mass[t] = m * scale
                            open_[t] = False
        if scoring:
            total = 0.0
            for t in range(n_trees):
                total += mass[t]
            scores[n_scored] = 1.0 - total / max_mass
            n_scored += 1
        seen += 1
        if seen % window_size == 0:  # §3.2: the latest window becomes the reference
            ref[:, :] = latest
            latest[:, :] = 0
            windows += 1
    return seen, windows, n_scored


class HalfSpaceTrees:
    """river-style online model: `learn_one(x)`, `score_one(x)` (higher = more anomalous)."""

    def __init__(
        self,
        features: Sequence[str],
        *,
        n_trees: int = 25,
        height: int = 8,
        window_size: int = 250,
        size_limit: float | None = None,
        limits: Mapping[str, tuple[float, float]] | None = None,
        seed: int = 42,
    ) -> None:
        if not features:
            raise ValueError("HalfSpaceTrees needs at least one feature")
        if height < 1 or n_trees < 1 or window_size < 1:
            raise ValueError("n_trees, height and window_size must be positive")
        self.features = list(features)
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        # §3.2: a node is used for scoring only if its reference mass exceeds this
        self.size_limit = 0.1 * window_size if size_limit is None else float(size_limit)
        self.seed = seed
        n_nodes = 2 ** (height + 1) - 1
        self.feat = np.zeros((n_trees, n_nodes), dtype=np.int32)
        self.split = np.zeros((n_trees, n_nodes), dtype=np.float64)
        self.r = np.zeros((n_trees, n_nodes), dtype=np.int64)  # reference window masses
        self.l = np.zeros((n_trees, n_nodes), dtype=np.int64)  # latest window masses
        self.seen = 0  # instances learned
        self.windows = 0  # completed windows (a reference profile exists once >= 1)
        self.lo: np.ndarray | None = None
        self.hi: np.ndarray | None = None
        self._warm: list[list[float]] = []  # the first window, while the limits are unknown
        self._max_mass = float(n_trees * window_size * 2**height)
        if limits is not None:
            self.lo = np.array([float(limits[f][0]) for f in self.features])
            self.hi = np.array([float(limits[f][1]) for f in self.features])
            self._build()

    # --- construction -----------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self.lo is not None

    @property
    def ready(self) -> bool:
        """A reference profile exists: scores mean something."""
        return self.windows >= 1

    def _build(self) -> None:
        """§3.1 BuildSingleHS-Tree, for each tree, on the unit cube with a random work range.

        The trees depend only on the seed and the shape: models alike (the model of all flows
        and each category's) share one construction, copied."""
        key = (self.seed, self.n_trees, self.height, len(self.features))
        built = _TREES.get(key)
        if built is None:
            self._grow()
            if len(_TREES) < 64:
                _TREES[key] = (self.feat.copy(), self.split.copy())
        else:
            self.feat[...] = built[0]
            self.split[...] = built[1]

    def _grow(self) -> None:
        rng = np.random.default_rng(self.seed)
        d = len(self.features)
        n_nodes = self.feat.shape[1]
        height = self.height
        for t in range(self.n_trees):
            s = rng.random(d)
            w = 2.0 * np.maximum(s, 1.0 - s)
            # the work range as Python floats: the same IEEE doubles, cheaper to copy
            mins, maxs = (s - w).tolist(), (s + w).tolist()
            feat = [0] * n_nodes
            split = [0.0] * n_nodes
            stack = [(0, mins, maxs, 0)]
            while stack:
                node, mn, mx, depth = stack.pop()
                if depth == height:
                    continue
                q = int(rng.integers(d))
                p = (mn[q] + mx[q]) / 2.0
                feat[node] = q
                split[node] = p
                left_max = mx.copy()
                left_max[q] = p
                right_min = mn.copy()
                right_min[q] = p
                stack.append((2 * node + 1, mn, left_max, depth + 1))
                stack.append((2 * node + 2, right_min, mx, depth + 1))
            self.feat[t] = feat
            self.split[t] = split

    def _learn_limits(self) -> None:
        warm = np.asarray(self._warm, dtype=np.float64)
        lo, hi = warm.min(axis=0), warm.max(axis=0)
        span = np.maximum(hi - lo, MIN_SPAN)
        mid = (lo + hi) / 2.0
        self.lo = mid - span
        self.hi = mid + span
        self._build()
        rows, self._warm = self._warm, []
        self.learn_many(np.asarray(rows, dtype=np.float64))

    # --- online interface ---------------------------------------------------------------------
    def _vector(self, x: Mapping[str, float]) -> np.ndarray:
        return np.array([float(x.get(f, 0.0)) for f in self.features], dtype=np.float64)

    def _unit(self, v: np.ndarray) -> np.ndarray:
        assert self.lo is not None and self.hi is not None
        u = np.empty(v.shape[0])
        _hst_unit(v, self.lo, self.hi, u)
        return u

    def _learn_vector(self, v: np.ndarray) -> None:
        _hst_learn(self._unit(v), self.feat, self.split, self.height, self.l)
        self.seen += 1
        if self.seen % self.window_size == 0:  # §3.2: the latest window becomes the reference
            self.r, self.l = self.l, np.zeros_like(self.l)
            self.windows += 1

    def learn_one(self, x: Mapping[str, float]) -> None:
        self.learn_vector(self._vector(x))

    def learn_vector(self, v: np.ndarray) -> None:
        """`learn_one` on the vector of the features in `self.features` order."""
        if not self.built:
            self._warm.append(v.tolist())
            if len(self._warm) >= self.window_size:
                self._learn_limits()
            return
        self._learn_vector(v)

    def score_one(self, x: Mapping[str, float]) -> float:
        """1 - mass / max mass: 0 for the densest region, 1 where the reference saw nothing."""
        return self.score_vector(self._vector(x))

    def score_vector(self, v: np.ndarray) -> float:
        """`score_one` on the vector of the features in `self.features` order."""
        if not self.ready:
            return 0.0
        assert self.lo is not None and self.hi is not None
        return float(
            _hst_score_raw(
                v,
                self.lo,
                self.hi,
                self.feat,
                self.split,
                self.height,
                self.r,
                self.size_limit,
                self._max_mass,
            )
        )

    def learn_many(
        self, X: np.ndarray, scores: list[float] | None = None, max_scores: int = 0
    ) -> None:
        """The rows of X (features in `self.features` order), in order, each exactly as

            if self.ready and scores is not None and len(scores) < max_scores:
                scores.append(self.score_one(x))
            self.learn_one(x)

        would do, in one compiled pass (the reference only changes at a window's end, which
        the pass follows row by row): same trees, masses and scores, bit for bit."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        i, n = 0, X.shape[0]
        while i < n and not self.built:  # the first window: limits unknown, rows kept
            if self.ready and scores is not None and len(scores) < max_scores:
                scores.append(self.score_vector(X[i]))  # (a reference without limits: never)
                self.learn_vector(X[i])
                i += 1
                continue
            k = max(1, min(n - i, self.window_size - len(self._warm)))
            self._warm.extend(X[i : i + k].tolist())
            i += k
            if len(self._warm) >= self.window_size:
                self._learn_limits()
        if i >= n:
            return
        assert self.lo is not None and self.hi is not None
        room = max(0, max_scores - len(scores)) if scores is not None else 0
        out = np.empty(min(room, n - i))
        # the kernel moves the window in place: `r` takes `l`'s counts, `l` restarts at zero
        if self.r is self.l:  # pragma: no cover - never shared, but in place needs two arrays
            self.r = self.r.copy()
        self.seen, self.windows, k = _hst_learn_scored(
            X[i:],
            self.lo,
            self.hi,
            self.feat,
            self.split,
            self.height,
            self.r,
            self.l,
            self.seen,
            self.window_size,
            self.windows,
            self.size_limit,
            self._max_mass,
            room,
            out,
        )
        if scores is not None and k:
            scores.extend(out[:k].tolist())

    # --- persistence ----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        shape = list(self.r.shape)
        return {
            "algorithm": "half-space-trees",
            "features": self.features,
            "n_trees": self.n_trees,
            "height": self.height,
            "window_size": self.window_size,
            "size_limit": self.size_limit,
            "seed": self.seed,
            "seen": self.seen,
            "windows": self.windows,
            "lo": None if self.lo is None else self.lo.tolist(),
            "hi": None if self.hi is None else self.hi.tolist(),
            "warm": self._warm,
            "shape": shape,
            "feat": _b64(self.feat.astype("<i2")),
            "split": _b64(self.split.astype("<f8")),
            "r": _b64(self.r.astype("<i4")),  # a mass is at most one window
            "l": _b64(self.l.astype("<i4")),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> HalfSpaceTrees:
        """Rebuild from `to_state()`; ValueError names what is wrong with a damaged state."""
        if not isinstance(state, Mapping) or state.get("algorithm") != "half-space-trees":
            raise ValueError("not a Half-Space Trees state")
        try:
            return cls._from_state(state)
        except (KeyError, TypeError, ValueError, binascii.Error, zlib.error) as exc:
            why = f"{type(exc).__name__}: {exc}"
            raise ValueError(f"damaged Half-Space Trees state ({why})") from exc

    @classmethod
    def _from_state(cls, state: Mapping[str, Any]) -> HalfSpaceTrees:
        m = cls(
            state["features"],
            n_trees=int(state["n_trees"]),
            height=int(state["height"]),
            window_size=int(state["window_size"]),
            size_limit=float(state["size_limit"]),
            seed=int(state["seed"]),
        )
        shape = tuple(int(s) for s in state["shape"])
        m.feat = _unb64(state["feat"], "<i2", shape).astype(np.int32)
        m.split = _unb64(state["split"], "<f8", shape).astype(np.float64)
        m.r = _unb64(state["r"], "<i4", shape).astype(np.int64)
        m.l = _unb64(state["l"], "<i4", shape).astype(np.int64)
        m.seen = int(state["seen"])
        m.windows = int(state["windows"])
        m._warm = [list(map(float, row)) for row in state.get("warm") or []]
        if state.get("lo") is not None:
            m.lo = np.asarray(state["lo"], dtype=np.float64)
            m.hi = np.asarray(state["hi"], dtype=np.float64)
        return m
