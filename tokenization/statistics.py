"""Mergeable statistics of the padded ``action``/``state`` vectors, per (dataset, embodiment).

Everything here merges: statistics of a shard, a block or a worker combine into the statistics of
their union, so a distributed pass needs no second read and no raw values on the driver.

- ``Moments``: per value count, mean, M2 (for std), min, max. Chan et al.'s pairwise update, in
  float64, so merging partials equals one pass up to rounding (no E[x²] − E[x]² cancellation).
- ``KLLSketch``: a KLL quantile sketch (Karnin, Lang, Liberty 2016) written with NumPy. It keeps
  every value while a dimension has at most ``exact_limit`` of them (then its quantiles *are*
  ``numpy.quantile``'s); past that, levels of weight 2^h are compacted by sorting and keeping every
  other item from a random offset. Its normalized rank error is about 2.3/k^0.97 with 99%
  confidence (Apache DataSketches' published KLL bound): 0.14% at the default k = 2048, well
  inside the 0.5% this project requires. Merging two sketches concatenates their levels and
  compacts, so the merged sketch has the same guarantee as a one-pass sketch of the union.
- ``LayoutStats``: moments of every position of one layout plus one sketch per position that has
  data; ``GroupStats``: action + state stats of one (dataset, embodiment); ``StatsAccumulator``:
  all groups, merged, and rendered as the ``stats.json`` document (docs/stats.md).

Masks are respected: a value contributes only where its mask is true, the action also only where
``action_valid`` is true, and slots a ``StatsSpec`` excludes (by default the action grippers, which
are absolute in [0, 1] and never normalized) carry no statistics at all.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from vlaflow.schemas import ACTION, SCHEMA_VERSION, STATE, TRAJECTORY, Layout

STATS_VERSION = 2  # 2: trajectory targets
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def quantile_key(q: float) -> str:
    return f"q{int(round(q * 100)):02d}"


QUANTILE_KEYS = tuple(quantile_key(q) for q in QUANTILES)


def kll_rank_error(k: int) -> float:
    """Normalized rank error of a KLL sketch with parameter k (99% confidence, single query)."""
    return 2.296 / k ** 0.9723


# --------------------------------------------------------------------------------------- moments
class Moments:
    """Per-position count, mean, M2, min, max over masked values; mergeable (Chan et al. 1979)."""

    __slots__ = ("count", "mean", "m2", "min", "max")

    def __init__(self, width: int):
        self.count = np.zeros(width, np.int64)
        self.mean = np.zeros(width, np.float64)
        self.m2 = np.zeros(width, np.float64)
        self.min = np.full(width, np.inf)
        self.max = np.full(width, -np.inf)

    @property
    def width(self) -> int:
        return len(self.count)

    @classmethod
    def of(cls, values: np.ndarray, mask: np.ndarray | None = None) -> "Moments":
        """Moments of ``values`` [N, W] where ``mask`` [N, W] (or all) is true."""
        values = np.asarray(values)
        if values.ndim == 1:
            values = values[:, None]
        mask = np.ones(values.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), values.shape)
        m = cls(values.shape[1])
        cols = np.flatnonzero(mask.any(0))  # padded positions (most of a layout) cost nothing
        if not cols.size:
            return m
        v = values[:, cols].astype(np.float64)
        mk = mask[:, cols]
        if mk.all():  # the common case: every row of the block has these values
            n = np.full(len(cols), len(v))
            mean = v.mean(0)
            dev = v - mean
            mn, mx = v.min(0), v.max(0)
        else:
            n = mk.sum(0)
            mean = np.where(mk, v, 0.0).sum(0) / np.maximum(n, 1)
            dev = np.where(mk, v - mean, 0.0)
            mn = np.where(mk, v, np.inf).min(0)
            mx = np.where(mk, v, -np.inf).max(0)
        m.count[cols], m.mean[cols], m.m2[cols] = n, mean, np.einsum("ij,ij->j", dev, dev)
        m.min[cols], m.max[cols] = mn, mx
        return m

    def merge(self, other: "Moments") -> "Moments":
        """In place: self becomes the moments of the union; returns self."""
        na, nb = self.count.astype(np.float64), other.count.astype(np.float64)
        n = na + nb
        safe = np.where(n > 0, n, 1.0)
        delta = other.mean - self.mean
        self.mean = np.where(n > 0, self.mean + delta * nb / safe, 0.0)
        self.m2 = self.m2 + other.m2 + delta * delta * na * nb / safe
        self.count = self.count + other.count
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)
        return self

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (``numpy.std``'s default, ddof = 0)."""
        return np.sqrt(np.maximum(self.m2, 0.0) / np.maximum(self.count, 1))


# -------------------------------------------------------------------------------------- KLL sketch
class KLLSketch:
    """Mergeable quantile sketch of one stream of floats (see the module docstring)."""

    __slots__ = ("k", "exact_limit", "levels", "n", "rng", "minv", "maxv")
    MIN_WIDTH = 8
    C = 2.0 / 3.0

    def __init__(self, k: int = 2048, exact_limit: int = 16384, seed: int = 0):
        if k < 16:
            raise ValueError("KLL k must be >= 16")
        self.k = int(k)
        self.exact_limit = int(exact_limit)
        self.levels: list[np.ndarray] = [np.empty(0, np.float64)]
        self.n = 0
        self.rng = np.random.default_rng(seed)
        self.minv, self.maxv = np.inf, -np.inf

    @property
    def exact(self) -> bool:
        """True while every value is kept (no compaction yet): quantiles equal numpy's."""
        return len(self.levels) == 1 and len(self.levels[0]) == self.n

    def _capacity(self, h: int) -> int:
        depth = len(self.levels) - 1 - h
        return max(self.MIN_WIDTH, int(np.ceil(self.k * self.C ** depth)))

    def update(self, values) -> "KLLSketch":
        v = np.asarray(values, np.float64).ravel()
        if v.size == 0:
            return self
        self.n += v.size
        self.minv = min(self.minv, float(v.min()))
        self.maxv = max(self.maxv, float(v.max()))
        self.levels[0] = np.concatenate([self.levels[0], v])
        self._compress()
        return self

    def merge(self, other: "KLLSketch") -> "KLLSketch":
        """In place: self becomes a sketch of both streams; returns self."""
        if other.n == 0:
            return self
        self.n += other.n
        self.minv = min(self.minv, other.minv)
        self.maxv = max(self.maxv, other.maxv)
        while len(self.levels) < len(other.levels):
            self.levels.append(np.empty(0, np.float64))
        for h, lv in enumerate(other.levels):
            if len(lv):
                self.levels[h] = np.concatenate([self.levels[h], lv])
        self._compress()
        return self

    def _size(self) -> int:
        return sum(len(lv) for lv in self.levels)

    def _compress(self) -> None:
        if self.n <= self.exact_limit and len(self.levels) == 1:
            return
        while True:
            caps = [self._capacity(h) for h in range(len(self.levels))]
            if self._size() <= sum(caps):
                return
            h = next(i for i, lv in enumerate(self.levels) if len(lv) >= caps[i])
            self._compact(h)

    def _compact(self, h: int) -> None:
        lv = np.sort(self.levels[h], kind="stable")
        keep = lv[:1] if len(lv) % 2 else lv[:0]  # an odd item stays behind, at its weight
        pairs = lv[len(keep):]
        promoted = pairs[int(self.rng.integers(2))::2]
        if h + 1 == len(self.levels):
            self.levels.append(np.empty(0, np.float64))
        self.levels[h] = keep
        self.levels[h + 1] = np.concatenate([self.levels[h + 1], promoted])

    def _weighted(self) -> tuple[np.ndarray, np.ndarray]:
        items = np.concatenate(self.levels)
        weights = np.concatenate([np.full(len(lv), 1 << h, np.float64) for h, lv in enumerate(self.levels)])
        order = np.argsort(items, kind="stable")
        return items[order], weights[order]

    def quantiles(self, qs=QUANTILES) -> np.ndarray:
        """Linear-interpolated quantiles; identical to ``numpy.quantile`` while ``exact``.

        An item of weight w covers w consecutive ranks; it is placed at their centre and values
        between centres are interpolated, which for unit weights is numpy's default definition.
        """
        qs = np.asarray(qs, np.float64)
        if self.n == 0:
            return np.full(qs.shape, np.nan)
        if self.exact:
            return np.quantile(self.levels[0], qs)
        items, w = self._weighted()
        centre = np.cumsum(w) - (w + 1) / 2
        out = np.interp(qs * (self.n - 1), centre, items)
        return np.clip(out, self.minv, self.maxv)

    def rank(self, x) -> np.ndarray:
        """Estimated number of values ≤ x."""
        items, w = self._weighted()
        cw = np.concatenate([[0.0], np.cumsum(w)])
        return cw[np.searchsorted(items, np.asarray(x, np.float64), side="right")]

    @property
    def rank_error(self) -> float:
        return 0.0 if self.exact else kll_rank_error(self.k)

    def __getstate__(self):
        return {"k": self.k, "exact_limit": self.exact_limit, "levels": self.levels, "n": self.n,
                "rng": self.rng.bit_generator.state, "minv": self.minv, "maxv": self.maxv}

    def __setstate__(self, st):
        self.k, self.exact_limit, self.levels, self.n = st["k"], st["exact_limit"], st["levels"], st["n"]
        self.minv, self.maxv = st["minv"], st["maxv"]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = st["rng"]


def rank_error(sorted_exact: np.ndarray, value: float, q: float) -> float:
    """Normalized rank error of ``value`` as the q-quantile of data whose sorted copy is given.

    Ties make a value's rank an interval [#(< v), #(≤ v)]; the error is the distance of q·n from
    it, over n. numpy's own linear quantile scores ≤ 1/n here.
    """
    n = len(sorted_exact)
    lo = np.searchsorted(sorted_exact, value, side="left")
    hi = np.searchsorted(sorted_exact, value, side="right")
    target = q * n
    return float(max(lo - target, target - hi, 0.0) / n)


# ------------------------------------------------------------------------------------ spec, layouts
@dataclass(frozen=True)
class StatsSpec:
    """What gets statistics and how precise they are. Part of the cache key of stats.json.

    ``exclude_action``/``exclude_state``: slot-name patterns (fnmatch) that carry no statistics;
    the action grippers by default (absolute in [0, 1], never normalized, as in Octo/OpenVLA).
    """

    exclude_action: tuple[str, ...] = ("*.gripper",)
    exclude_state: tuple[str, ...] = ()
    quantiles: tuple[float, ...] = QUANTILES
    k: int = 2048
    exact_limit: int = 16384

    def keep(self, layout: Layout) -> np.ndarray:
        patterns = {"action": self.exclude_action, "state": self.exclude_state}.get(layout.kind, ())
        keep = np.ones(layout.width, bool)
        for s in layout.slots:
            if any(fnmatch.fnmatchcase(s.name, p) for p in patterns):
                a, b = layout.range(s.name)
                keep[a:b] = False
        return keep

    def to_json(self) -> dict:
        d = asdict(self)
        d["exclude_action"], d["exclude_state"] = list(self.exclude_action), list(self.exclude_state)
        d["quantiles"] = list(self.quantiles)
        d["sketch"] = {"kind": "kll", "k": self.k, "exact_limit": self.exact_limit,
                       "rank_error_bound": round(kll_rank_error(self.k), 6)}
        return d

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


class LayoutStats:
    """Statistics of every position of one layout (``ACTION`` or ``STATE``) in one group."""

    def __init__(self, layout: Layout, spec: StatsSpec, seed: int = 0):
        self.layout, self.spec, self.seed = layout, spec, seed
        self.keep = spec.keep(layout)
        self.moments = Moments(layout.width)
        self.sketches: dict[int, KLLSketch] = {}

    def update(self, values: np.ndarray, mask: np.ndarray) -> None:
        """``values``/``mask`` [N, width]; the spec's exclusions are applied here."""
        mask = np.asarray(mask, bool) & self.keep
        if not mask.any():
            return
        self.moments.merge(Moments.of(values, mask))
        for d in np.flatnonzero(mask.any(0)):
            col = mask[:, d]
            v = values[:, d] if col.all() else values[col, d]
            sk = self.sketches.get(d)
            if sk is None:
                sk = self.sketches[d] = KLLSketch(self.spec.k, self.spec.exact_limit, seed=self.seed * 7919 + d)
            sk.update(v)

    def merge(self, other: "LayoutStats") -> "LayoutStats":
        self.moments.merge(other.moments)
        for d, sk in other.sketches.items():
            if d in self.sketches:
                self.sketches[d].merge(sk)
            else:
                self.sketches[d] = sk
        return self

    def to_json(self) -> dict:
        """{slot: {start, width, count[], mean[], std[], min[], max[], q01[] ...}}; null where a
        position of a listed slot has no values (e.g. the 7th joint of a 6-DoF arm)."""
        m, qs = self.moments, self.spec.quantiles
        qv = np.full((self.layout.width, len(qs)), np.nan)
        for d, sk in self.sketches.items():
            qv[d] = sk.quantiles(qs)
        out = {}
        for s in self.layout.slots:
            a, b = self.layout.range(s.name)
            if not m.count[a:b].any():
                continue
            has = m.count[a:b] > 0

            def f(arr, has=has):
                return [float(x) if h else None for x, h in zip(arr, has)]

            entry = {"start": a, "width": s.width, "unit": s.unit, "count": [int(c) for c in m.count[a:b]],
                     "mean": f(m.mean[a:b]), "std": f(m.std[a:b]), "min": f(m.min[a:b]), "max": f(m.max[a:b])}
            for j, q in enumerate(qs):
                entry[quantile_key(q)] = f(qv[a:b, j])
            entry["exact_quantiles"] = all(self.sketches[d].exact for d in range(a, b) if d in self.sketches)
            out[s.name] = entry
        return out


class GroupStats:
    """Action and state statistics of one (dataset, embodiment), plus row/episode counts."""

    def __init__(self, dataset: str, embodiment: str, spec: StatsSpec, seed: int = 0):
        self.dataset, self.embodiment, self.spec = dataset, embodiment, spec
        self.rows = self.episodes = self.action_rows = 0
        self.action = LayoutStats(ACTION, spec, seed)
        self.state = LayoutStats(STATE, spec, seed + 1)
        # trajectory targets: one value per slot position, pooled over the horizon steps
        self.trajectory = LayoutStats(TRAJECTORY, spec, seed + 2)

    def update(self, action, action_mask, action_valid, state, state_mask, is_first=None,
               trajectory=None, trajectory_mask=None) -> None:
        action_valid = np.asarray(action_valid, bool)
        self.rows += len(action_valid)
        self.action_rows += int(action_valid.sum())
        if is_first is not None:
            self.episodes += int(np.asarray(is_first, bool).sum())
        self.action.update(action, np.asarray(action_mask, bool) & action_valid[:, None])
        self.state.update(state, state_mask)
        if trajectory is not None and len(trajectory):
            w = TRAJECTORY.width
            self.trajectory.update(np.asarray(trajectory).reshape(-1, w), np.asarray(trajectory_mask).reshape(-1, w))

    def merge(self, other: "GroupStats") -> "GroupStats":
        self.rows += other.rows
        self.episodes += other.episodes
        self.action_rows += other.action_rows
        self.action.merge(other.action)
        self.state.merge(other.state)
        self.trajectory.merge(other.trajectory)
        return self

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "embodiment": self.embodiment, "rows": self.rows,
                "episodes": self.episodes, "action_rows": self.action_rows,
                "action": self.action.to_json(), "state": self.state.to_json(),
                "trajectory": self.trajectory.to_json()}


def group_key(dataset: str, embodiment: str) -> str:
    return f"{dataset}/{embodiment}"


@dataclass
class StatsAccumulator:
    """All groups of a pass; ``merge`` partials in any grouping and render ``to_json``."""

    spec: StatsSpec = field(default_factory=StatsSpec)
    seed: int = 0
    groups: dict[str, GroupStats] = field(default_factory=dict)

    def group(self, dataset: str, embodiment: str) -> GroupStats:
        key = group_key(dataset, embodiment)
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = GroupStats(dataset, embodiment, self.spec, self.seed * 1009 + len(self.groups))
        return g

    def update(self, dataset: str, embodiment: str, **arrays) -> None:
        self.group(dataset, embodiment).update(**arrays)

    def update_rows(self, datasets, embodiments, action, action_mask, action_valid, state, state_mask,
                    is_first=None, trajectory=None, trajectory_mask=None) -> None:
        """Rows of mixed groups: ``datasets``/``embodiments`` hold one name per row; ``trajectory`` (optional)
        [N, H, width] with its mask (rows without targets fully masked)."""
        datasets, embodiments = np.asarray(datasets, object), np.asarray(embodiments, object)
        pairs = sorted(set(zip(datasets.tolist(), embodiments.tolist())))
        for ds, emb in pairs:
            sel = (datasets == ds) & (embodiments == emb)
            if len(pairs) == 1:
                sel = slice(None)
            self.group(ds, emb).update(action[sel], action_mask[sel], np.asarray(action_valid)[sel], state[sel],
                                       state_mask[sel], None if is_first is None else np.asarray(is_first)[sel],
                                       None if trajectory is None else trajectory[sel],
                                       None if trajectory is None else trajectory_mask[sel])

    def merge(self, other: "StatsAccumulator") -> "StatsAccumulator":
        if other.spec != self.spec:
            raise ValueError("cannot merge statistics computed under different specs")
        for key in sorted(other.groups):
            g = other.groups[key]
            if key in self.groups:
                self.groups[key].merge(g)
            else:
                self.groups[key] = g
        return self

    def by_embodiment(self) -> dict[str, GroupStats]:
        """Groups of one embodiment merged across datasets (their sketches merge exactly as shards do)."""
        import copy

        out: dict[str, GroupStats] = {}
        for key in sorted(self.groups):
            g = self.groups[key]
            if g.embodiment in out:
                out[g.embodiment].merge(copy.deepcopy(g))
                out[g.embodiment].dataset += "," + g.dataset
            else:
                out[g.embodiment] = copy.deepcopy(g)
        return out

    def to_json(self) -> dict:
        embs = {}
        for emb, g in self.by_embodiment().items():
            d = g.to_json()
            d.pop("dataset")
            d["datasets"] = g.dataset.split(",")
            embs[emb] = d
        return {"stats_version": STATS_VERSION, "schema_version": SCHEMA_VERSION, "spec": self.spec.to_json(),
                "quantile_keys": [quantile_key(q) for q in self.spec.quantiles],
                "groups": {k: self.groups[k].to_json() for k in sorted(self.groups)}, "embodiments": embs}
