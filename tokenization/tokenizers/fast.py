"""FAST action tokens (Pertsch et al. 2025): DCT over time, scale and round, BPE.

Encode a normalized chunk ``[T, D]`` (values about [-1, 1]):

1. DCT-II along time for each dimension, orthonormal (``norm="ortho"``), written with NumPy;
2. multiply by ``scale`` (default 10) and round to integers;
3. flatten frequency-major — all dimensions of frequency 0, then of frequency 1, … — so the low
   frequencies, which carry most of a smooth motion, come first;
4. map each integer ``v`` to the character ``chr(0x100 + v - min_token)`` and apply a byte-pair
   encoding trained with ``tokenizers`` on the corpus (default vocabulary 1024; the initial alphabet
   is every integer between the corpus' smallest and largest coefficient, so only merges are learned).

Decode inverts each step. An invalid sequence — an id outside the vocabulary, a character outside
the alphabet, or a coefficient count other than ``T·D`` — decodes to the **fallback: zeros** (the
centre of every normalized value), never an exception; ``decode_with_status`` reports it.
Coefficients outside the fitted range are clipped at encode time (the fitted range is the corpus'
range; a value far outside [-1, 1] needs a refit).

The round trip is lossy only through step 2: each coefficient moves by at most 0.5/scale, and
since the DCT is orthonormal a chunk's RMS error is at most 0.5/scale (≈ 0.29/scale typically).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

BASE_CHAR = 0x100
CONFIG_NAME = "fast_config.json"
TOKENIZER_NAME = "fast_bpe.json"


@lru_cache(maxsize=64)
def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix C [n, n]: coefficients = C @ x, inverse x = C.T @ coefficients."""
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    c = np.sqrt(2.0 / n) * np.cos(np.pi / n * (t + 0.5) * k)
    c[0] /= np.sqrt(2.0)
    c.setflags(write=False)
    return c


def dct(chunk: np.ndarray) -> np.ndarray:
    chunk = np.asarray(chunk, np.float64)
    return dct_matrix(chunk.shape[0]) @ chunk


def idct(coef: np.ndarray) -> np.ndarray:
    coef = np.asarray(coef, np.float64)
    return dct_matrix(coef.shape[0]).T @ coef


class FASTTokenizer:
    def __init__(self, bpe, scale: float = 10.0, min_token: int = 0, max_token: int = 0):
        self.bpe, self.scale = bpe, float(scale)
        self.min_token, self.max_token = int(min_token), int(max_token)

    # ---------------------------------------------------------------------------- fit / persist
    @classmethod
    def fit(cls, chunks, vocab_size: int = 1024, scale: float = 10.0, min_frequency: int = 2) -> "FASTTokenizer":
        """Train the BPE on an iterable of ``[T, D]`` normalized chunks (T and D may vary)."""
        from tokenizers import Tokenizer, models, trainers

        coefs = [cls._quantize(c, scale).ravel() for c in chunks]
        if not coefs:
            raise ValueError("FAST needs at least one chunk to fit")
        lo = int(min(c.min() for c in coefs))
        hi = int(max(c.max() for c in coefs))
        alphabet = hi - lo + 1
        if alphabet > vocab_size:
            raise ValueError(f"the coefficients span {alphabet} integers, more than vocab_size={vocab_size}: "
                             "raise vocab_size, lower scale, or normalize the actions first")
        chars = [chr(BASE_CHAR + i) for i in range(alphabet)]
        bpe = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, initial_alphabet=chars,
                                      limit_alphabet=alphabet, show_progress=False, special_tokens=[])
        bpe.train_from_iterator(("".join(chr(BASE_CHAR + int(v) - lo) for v in c) for c in coefs), trainer)
        return cls(bpe, scale, lo, hi)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.bpe.save(str(path / TOKENIZER_NAME))
        (path / CONFIG_NAME).write_text(json.dumps({"scale": self.scale, "min_token": self.min_token,
                                                    "max_token": self.max_token, "base_char": BASE_CHAR}, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "FASTTokenizer":
        from tokenizers import Tokenizer

        path = Path(path)
        cfg = json.loads((path / CONFIG_NAME).read_text())
        return cls(Tokenizer.from_file(str(path / TOKENIZER_NAME)), cfg["scale"], cfg["min_token"], cfg["max_token"])

    @property
    def vocab_size(self) -> int:
        return self.bpe.get_vocab_size()

    # -------------------------------------------------------------------------- encode / decode
    @staticmethod
    def _quantize(chunk, scale: float) -> np.ndarray:
        chunk = np.asarray(chunk, np.float64)
        if chunk.ndim == 1:
            chunk = chunk[:, None]
        return np.rint(dct(chunk) * scale).astype(np.int64)

    def coefficients(self, chunk) -> np.ndarray:
        """The clipped integer DCT coefficients [T, D] of a chunk."""
        return np.clip(self._quantize(chunk, self.scale), self.min_token, self.max_token)

    def encode(self, chunk) -> list[int]:
        """[T, D] normalized chunk → FAST token ids in [0, vocab_size)."""
        c = self.coefficients(chunk).ravel()  # row-major [freq, dim]: low frequencies first
        text = "".join(chr(BASE_CHAR + int(v) - self.min_token) for v in c)
        return self.bpe.encode(text).ids

    def decode_with_status(self, ids, horizon: int, action_dim: int) -> tuple[np.ndarray, bool]:
        fallback = np.zeros((horizon, action_dim))
        pieces = []
        for i in ids:
            tok = self.bpe.id_to_token(int(i)) if 0 <= int(i) < self.vocab_size else None
            if tok is None:
                return fallback, False
            pieces.append(tok)
        codes = np.fromiter((ord(ch) for ch in "".join(pieces)), np.int64) - BASE_CHAR
        if codes.size != horizon * action_dim or (codes.size and (codes.min() < 0 or
                                                                  codes.max() > self.max_token - self.min_token)):
            return fallback, False
        coef = (codes + self.min_token).reshape(horizon, action_dim) / self.scale
        return idct(coef), True

    def decode(self, ids, horizon: int, action_dim: int) -> np.ndarray:
        return self.decode_with_status(ids, horizon, action_dim)[0]


class FASTActionTokenizer:
    """FAST tokens placed in a reserved id range of a Hugging Face tokenizer (see ``bins.ReservedIds``).

    Same interface as ``bins.BinActionTokenizer``: ``encode(chunk) → LM ids``,
    ``decode(ids, action_dim, horizon)``; an id outside the range decodes to the zeros fallback.
    """

    def __init__(self, fast: FASTTokenizer, tokenizer=None, strategy: str = "added", ids=None):
        from .bins import ReservedIds

        self.fast = fast
        if ids is None:
            ids = (ReservedIds.reserve(tokenizer, fast.vocab_size, strategy, template="<|fast_{}|>")
                   if tokenizer is not None else ReservedIds(0, fast.vocab_size, "none"))
        self.ids = ids

    def encode(self, chunk) -> list[int]:
        return self.ids.to_lm(self.fast.encode(chunk)).tolist()

    def decode_with_status(self, ids, action_dim: int, horizon: int | None = None) -> tuple[np.ndarray, bool]:
        if horizon is None:
            raise ValueError("FAST decoding needs the chunk's horizon")
        tok = self.ids.from_lm(np.asarray(list(ids), np.int64))
        if (tok < 0).any():
            return np.zeros((horizon, action_dim)), False
        return self.fast.decode_with_status(tok.tolist(), horizon, action_dim)

    def decode(self, ids, action_dim: int, horizon: int | None = None) -> np.ndarray:
        return self.decode_with_status(ids, action_dim, horizon)[0]
