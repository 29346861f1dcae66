"""What gets statistics and how precise they are: ``StatsSpec``, the quantiles reported, the version.

Masks are respected by the accumulator: a value contributes only where its mask is true, the action
also only where ``action_valid`` is true, and slots a ``StatsSpec`` excludes (by default the action
grippers, which are absolute in [0, 1] and never normalized) carry no statistics at all.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import asdict, dataclass, fields

import numpy as np

from vlaflow.schemas import Layout

from .kll import kll_rank_error

STATS_VERSION = 2  # 2: trajectory targets
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def quantile_key(q: float) -> str:
    return f"q{int(round(q * 100)):02d}"


QUANTILE_KEYS = tuple(quantile_key(q) for q in QUANTILES)


@dataclass(frozen=True)
class StatsSpec:
    """Part of the cache key of stats.json, and what a saved partial must match to be merged.

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

    @classmethod
    def from_json(cls, d: dict) -> "StatsSpec":
        """Inverse of ``to_json`` (``sketch`` is derived, so it is only checked by the round trip)."""
        names = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or not names <= set(d):
            raise ValueError(f"a stats spec needs the keys {sorted(names)}")
        spec = cls(exclude_action=tuple(d["exclude_action"]), exclude_state=tuple(d["exclude_state"]),
                   quantiles=tuple(float(q) for q in d["quantiles"]), k=int(d["k"]), exact_limit=int(d["exact_limit"]))
        if spec.to_json() != d:
            raise ValueError("the stats spec does not round-trip (unknown or inconsistent keys)")
        return spec

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()
