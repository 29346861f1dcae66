"""Uniform-bin action tokens on real Bridge actions, mapped into a locally built HF tokenizer."""
from __future__ import annotations

import numpy as np
import pytest

from vlaflow.tokenization.tokenizers.bins import BinActionTokenizer, ReservedIds, UniformBins
from vlaflow.tokenization.sampling.chunks import action_chunks
from vlaflow.tokenization.normalization import Normalizer


@pytest.fixture(scope="module")
def bridge_chunks(bridge_ingest, bridge_rows):
    _, stats = bridge_ingest
    r = bridge_rows
    y = Normalizer(stats, "quantile").normalize(r["action"], "bridge_dataset", "widowx_250")
    chunks, pos, _ = action_chunks(y, r["action_mask"], r["action_valid"], r["episode_id"], horizon=5)
    return chunks, pos


def test_bins_round_trip_within_half_a_bin(bridge_chunks):
    chunks, pos = bridge_chunks
    assert chunks.shape == (250, 5, 7) and len(pos) == 7  # 9 valid steps per episode → 5 windows of 5
    bins = UniformBins(256)
    idx = bins.encode(chunks)
    assert idx.min() >= 0 and idx.max() <= 255
    err = np.abs(bins.decode(idx) - chunks)
    assert err.max() <= bins.max_error + 1e-12 == 1 / 256 + 1e-12
    # edges: -1 → bin 0, +1 → last bin, outside values clip, NaN goes to the middle
    np.testing.assert_array_equal(bins.encode([-1.0, 1.0, -7.0, 7.0, np.nan]), [0, 255, 0, 255, 128])
    with pytest.raises(ValueError):
        UniformBins(1)


def test_added_tokens_get_a_contiguous_range_after_the_vocabulary(bridge_chunks, tiny_tokenizer):
    chunks, pos = bridge_chunks
    n_text = len(tiny_tokenizer)
    at = BinActionTokenizer(tiny_tokenizer, n_bins=256)
    assert at.ids == ReservedIds(n_text, 256, "added") and len(tiny_tokenizer) == n_text + 256
    assert tiny_tokenizer.convert_ids_to_tokens(n_text + 17) == "<|act_17|>"
    ids = at.encode(chunks[0])
    assert len(ids) == BinActionTokenizer.tokens_per_chunk(5, 7) == 35
    assert all(n_text <= i < n_text + 256 for i in ids)
    dec, ok = at.decode_with_status(ids, action_dim=7, horizon=5)
    assert ok and np.abs(dec - chunks[0]).max() <= 1 / 256 + 1e-12
    # decoded through the tokenizer's own text and back: the tokens survive as whole special tokens
    text = tiny_tokenizer.decode(ids)
    assert tiny_tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    # ordinary text never produces action tokens
    assert not at.ids.contains(tiny_tokenizer("act 17 <act_17>", add_special_tokens=False)["input_ids"]).any()
    # reserving again reuses the same tokens
    assert BinActionTokenizer(tiny_tokenizer).ids == at.ids and len(tiny_tokenizer) == n_text + 256


def test_tail_strategy_and_invalid_sequences(bridge_chunks, tiny_tokenizer):
    chunks, _ = bridge_chunks
    size = tiny_tokenizer.vocab_size
    at = BinActionTokenizer(tiny_tokenizer, n_bins=64, strategy="tail")
    assert at.ids.first == size - 64 and len(tiny_tokenizer) == size  # nothing added
    ids = at.encode(chunks[1])
    assert min(ids) >= size - 64 and max(ids) < size
    for bad in ([0] * 35, ids[:-1], [], ids[:34] + [10**6]):
        dec, ok = at.decode_with_status(bad, action_dim=7, horizon=5)
        assert not ok and dec.shape == (5, 7) and (dec == 0).all()  # the defined fallback: zeros
    with pytest.raises(ValueError):
        ReservedIds.reserve(tiny_tokenizer, 4, "middle")
