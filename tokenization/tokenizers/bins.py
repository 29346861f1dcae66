"""Uniform-bin action tokens in a Hugging Face tokenizer's vocabulary.

``UniformBins``: N bins (default 256) of equal width over [-1, 1]; a value maps to the bin holding
it (values outside are clipped into the end bins) and decodes to that bin's centre, so the
round-trip error inside [-1, 1] is at most half a bin, 1/N.

Where the tokens live in the language model's vocabulary (``ReservedIds``), two documented choices:

- ``"added"`` (default): N new special tokens ``<|act_0|>`` … ``<|act_{N-1}|>`` are added to the
  tokenizer. They get one contiguous id range after the existing vocabulary, never collide with
  text (a special token is never produced by tokenizing ordinary text and is matched whole), and
  read back unambiguously. The model's embedding matrix must cover them
  (``model.resize_token_embeddings(len(tokenizer))``); many checkpoints (Qwen2/2.5) already pad
  their embedding matrix past ``len(tokenizer)``, so the new rows often exist already.
- ``"tail"``: the last N ids of the existing vocabulary are reused, as OpenVLA does with Llama-2's
  least-used tokens. Nothing is resized, but those N text tokens lose their meaning; use it only to
  match a checkpoint trained that way.

Token i of the action vocabulary is LM id ``first + i`` in both cases (OpenVLA counts down from the
end instead; the order inside the range is a convention, the range is what matters).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTION_TOKEN = "<|act_{}|>"


class UniformBins:
    def __init__(self, n_bins: int = 256, low: float = -1.0, high: float = 1.0):
        if n_bins < 2 or not high > low:
            raise ValueError("need n_bins >= 2 and high > low")
        self.n_bins, self.low, self.high = int(n_bins), float(low), float(high)
        self.width = (self.high - self.low) / self.n_bins

    def encode(self, x) -> np.ndarray:
        """Values → bin indices in [0, n_bins) (int64); NaN maps to the middle bin."""
        x = np.nan_to_num(np.asarray(x, np.float64), nan=(self.low + self.high) / 2)
        idx = np.floor((x - self.low) / self.width).astype(np.int64)
        return np.clip(idx, 0, self.n_bins - 1)

    def decode(self, idx) -> np.ndarray:
        """Bin indices → bin centres (float64); indices outside the range are clipped."""
        idx = np.clip(np.asarray(idx, np.int64), 0, self.n_bins - 1)
        return self.low + (idx + 0.5) * self.width

    @property
    def max_error(self) -> float:
        return self.width / 2


@dataclass(frozen=True)
class ReservedIds:
    """A contiguous range of ``n`` LM token ids ``[first, first + n)`` that holds action tokens."""

    first: int
    n: int
    strategy: str

    @classmethod
    def reserve(cls, tokenizer, n: int, strategy: str = "added", template: str = ACTION_TOKEN) -> "ReservedIds":
        """Reserve ``n`` ids in ``tokenizer`` (which is modified when ``strategy == "added"``).

        Idempotent: tokens already added by an earlier call (same names) are reused.
        """
        if strategy == "added":
            names = [template.format(i) for i in range(n)]
            tokenizer.add_tokens(names, special_tokens=True)
            ids = tokenizer.convert_tokens_to_ids(names)
            first = ids[0]
            if ids != list(range(first, first + n)):
                raise ValueError("the added action tokens did not get contiguous ids")
            return cls(first, n, strategy)
        if strategy == "tail":
            size = tokenizer.vocab_size
            if n > size:
                raise ValueError(f"cannot reserve {n} ids in a vocabulary of {size}")
            return cls(size - n, n, strategy)
        raise ValueError(f"unknown strategy {strategy!r}; 'added' or 'tail'")

    def to_lm(self, tokens) -> np.ndarray:
        t = np.asarray(tokens, np.int64)
        if t.size and (t.min() < 0 or t.max() >= self.n):
            raise ValueError(f"action token outside [0, {self.n})")
        return t + self.first

    def from_lm(self, ids) -> np.ndarray:
        """LM ids → action tokens; ids outside the range give -1."""
        t = np.asarray(ids, np.int64) - self.first
        return np.where((t >= 0) & (t < self.n), t, -1)

    def contains(self, ids) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        return (ids >= self.first) & (ids < self.first + self.n)


class BinActionTokenizer:
    """[T, D] normalized action chunk ↔ T·D LM ids (time-major: all values of step 0 first).

    An id outside the reserved range, or a wrong count, decodes to the fallback: zeros, i.e. the
    centre of every normalized value (``decode_with_status`` says whether that happened).
    """

    def __init__(self, tokenizer=None, n_bins: int = 256, strategy: str = "added", ids: ReservedIds | None = None):
        self.bins = UniformBins(n_bins)
        if ids is None:
            ids = (ReservedIds.reserve(tokenizer, n_bins, strategy) if tokenizer is not None
                   else ReservedIds(0, n_bins, "none"))
        self.ids = ids

    def encode(self, chunk) -> list[int]:
        chunk = np.asarray(chunk)
        if chunk.ndim == 1:
            chunk = chunk[None]
        return self.ids.to_lm(self.bins.encode(chunk).ravel()).tolist()

    def decode_with_status(self, ids, action_dim: int, horizon: int | None = None) -> tuple[np.ndarray, bool]:
        tok = self.ids.from_lm(np.asarray(list(ids), np.int64))
        ok = tok.size > 0 and bool((tok >= 0).all()) and tok.size % action_dim == 0
        if horizon is not None:
            ok = ok and tok.size == horizon * action_dim
        if not ok:
            return np.zeros((horizon or max(tok.size // action_dim, 1), action_dim)), False
        return self.bins.decode(tok).reshape(-1, action_dim), True

    def decode(self, ids, action_dim: int, horizon: int | None = None) -> np.ndarray:
        return self.decode_with_status(ids, action_dim, horizon)[0]

    @staticmethod
    def tokens_per_chunk(horizon: int, action_dim: int) -> int:
        return horizon * action_dim
