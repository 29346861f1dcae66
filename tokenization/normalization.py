"""Normalization of padded action/state vectors with ``stats.json``, per embodiment and slot.

Every mode is one affine map per value, ``y = (x - center) / scale``, so the inverse is exact
(``x = y * scale + center``, computed in float64):

- ``zscore``:   center = mean, scale = std;
- ``bounds``:   min/max → [-1, 1]: center = (min + max) / 2, scale = (max - min) / 2;
- ``quantile``: q01/q99 → [-1, 1], then clipped to [-1, 1] (OpenVLA's BOUNDS_Q99, Octo's BOUNDS):
  center = (q01 + q99) / 2, scale = (q99 - q01) / 2. Clipping is the one lossy step — values
  outside [q01, q99] come back as q01/q99; pass ``clip=False`` for an exactly invertible map;
- ``none``:     the value passes through.

A zero-range value (constant in the data, scale < ``eps``) gets scale 1: it maps to x - center (0
for the constant itself), never to a division by ~0, and still inverts exactly. Positions without
statistics — padding, slots the stats spec excluded such as grippers — pass through unchanged, so
masked-out zeros stay zeros.

Statistics are looked up per (dataset, embodiment) group (``by="group"``, the default) or per
embodiment merged over its datasets (``by="embodiment"``). Per-slot modes override the default:
``Normalizer(stats, "quantile", slot_modes={"arm.eef_pos_delta": "zscore"})``.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np

from vlaflow.schemas import ACTION, STATE, Layout

MODES = ("zscore", "bounds", "quantile", "none")
EPS = 1e-8


@dataclass(frozen=True)
class Affine:
    """The per-position map of one group: y = (x - center) / scale where ``active``."""

    center: np.ndarray
    scale: np.ndarray
    active: np.ndarray
    clip: np.ndarray  # positions clipped to [-1, 1] after mapping (quantile mode)


def _layout(name: str | Layout) -> Layout:
    if isinstance(name, Layout):
        return name
    return {"action": ACTION, "state": STATE}[name]


class Normalizer:
    def __init__(self, stats: dict, mode: str = "quantile", layout: str | Layout = "action", by: str = "group",
                 slot_modes: dict[str, str] | None = None, clip: bool = True, eps: float = EPS):
        if mode not in MODES:
            raise ValueError(f"unknown normalization mode {mode!r}; one of {MODES}")
        for m in (slot_modes or {}).values():
            if m not in MODES:
                raise ValueError(f"unknown normalization mode {m!r}; one of {MODES}")
        if by not in ("group", "embodiment"):
            raise ValueError("by must be 'group' or 'embodiment'")
        self.stats, self.mode, self.layout, self.by = stats, mode, _layout(layout), by
        self.slot_modes, self.clip, self.eps = dict(slot_modes or {}), clip, eps
        self._cache: dict[str, Affine] = {}

    def _entry(self, dataset: str | None, embodiment: str | None) -> tuple[str, dict]:
        if self.by == "embodiment":
            if embodiment is None:
                raise ValueError("by='embodiment' needs the embodiment")
            table = self.stats.get("embodiments", {})
            key = embodiment
        else:
            table = self.stats.get("groups", {})
            if dataset is None or embodiment is None:
                cands = [k for k, g in table.items() if (dataset is None or g["dataset"] == dataset)
                         and (embodiment is None or g["embodiment"] == embodiment)]
                if len(cands) != 1:
                    raise KeyError(f"statistics for dataset={dataset!r} embodiment={embodiment!r} are "
                                   f"ambiguous or missing ({len(cands)} groups match)")
                key = cands[0]
            else:
                key = f"{dataset}/{embodiment}"
        if key not in table:
            raise KeyError(f"no statistics for {key!r}; have {sorted(table)}")
        return key, table[key]

    def _slot_mode(self, slot: str) -> str:
        if slot in self.slot_modes:
            return self.slot_modes[slot]
        for pat, m in self.slot_modes.items():
            if fnmatch.fnmatchcase(slot, pat):
                return m
        return self.mode

    def affine(self, dataset: str | None = None, embodiment: str | None = None) -> Affine:
        key, entry = self._entry(dataset, embodiment)
        if key in self._cache:
            return self._cache[key]
        w = self.layout.width
        center, scale = np.zeros(w), np.ones(w)
        active, clip = np.zeros(w, bool), np.zeros(w, bool)
        for slot, st in entry[self.layout.kind].items():
            mode = self._slot_mode(slot)
            if mode == "none":
                continue
            a = st["start"]
            for i in range(st["width"]):
                if not st["count"][i]:
                    continue
                if mode == "zscore":
                    c, s = st["mean"][i], st["std"][i]
                elif mode == "bounds":
                    c, s = (st["min"][i] + st["max"][i]) / 2, (st["max"][i] - st["min"][i]) / 2
                else:
                    lo, hi = st["q01"][i], st["q99"][i]
                    c, s = (lo + hi) / 2, (hi - lo) / 2
                    clip[a + i] = self.clip
                center[a + i], scale[a + i] = c, (s if s >= self.eps else 1.0)
                active[a + i] = True
        aff = Affine(center, scale, active, clip)
        self._cache[key] = aff
        return aff

    def normalize(self, x, dataset: str | None = None, embodiment: str | None = None) -> np.ndarray:
        """``x`` [..., width] → normalized, same dtype (float32 stays float32)."""
        x = np.asarray(x)
        a = self.affine(dataset, embodiment)
        y = (x.astype(np.float64) - a.center) / a.scale
        y = np.where(a.clip, np.clip(y, -1.0, 1.0), y)
        y = np.where(a.active, y, x)
        return y.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)

    def denormalize(self, y, dataset: str | None = None, embodiment: str | None = None) -> np.ndarray:
        """Exact inverse of ``normalize`` (up to float rounding) for values it did not clip."""
        y = np.asarray(y)
        a = self.affine(dataset, embodiment)
        x = y.astype(np.float64) * a.scale + a.center
        x = np.where(a.active, x, y)
        return x.astype(y.dtype if np.issubdtype(y.dtype, np.floating) else np.float64)
