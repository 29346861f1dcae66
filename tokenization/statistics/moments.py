"""Per-position count, mean, M2 (for std), min and max of masked values, mergeable.

Chan et al.'s pairwise update, in float64, so merging partials equals one pass up to rounding (no
E[x²] − E[x]² cancellation).
"""
from __future__ import annotations

import numpy as np

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



    def arrays(self) -> dict[str, np.ndarray]:
        """The exact state as plain arrays (what a saved partial holds)."""
        return {f: getattr(self, f) for f in self.__slots__}

    @classmethod
    def from_arrays(cls, arrays, width: int) -> "Moments":
        """Inverse of ``arrays``; refuses arrays of another dtype or width (they come from a file)."""
        m = cls(width)
        for f in cls.__slots__:
            a, want = np.asarray(arrays[f]), getattr(m, f)
            if a.shape != want.shape or a.dtype != want.dtype:
                raise ValueError(f"moments {f}: expected {want.dtype}[{width}], got {a.dtype}{list(a.shape)}")
            setattr(m, f, a.copy())
        return m
