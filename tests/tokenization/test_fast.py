"""FAST on real Bridge action chunks: DCT, fit on train, measure on val, invalid sequences."""
from __future__ import annotations

import numpy as np
import pytest

from vlaflow.tokenization.sampling.chunks import action_chunks
from vlaflow.tokenization.tokenizers.fast import FASTActionTokenizer, FASTTokenizer, dct, dct_matrix, idct
from vlaflow.tokenization.normalization import Normalizer

H = 5


@pytest.fixture(scope="module")
def split_chunks(bridge_ingest, bridge_rows):
    _, stats = bridge_ingest
    r = bridge_rows
    y = Normalizer(stats, "quantile").normalize(r["action"], "bridge_dataset", "widowx_250")
    out = {}
    for split in ("train", "val"):
        sel = np.array(["/" + split + "/" in e for e in r["episode_id"]])
        out[split] = action_chunks(y[sel], r["action_mask"][sel], r["action_valid"][sel], r["episode_id"][sel], H)[0]
    return out


@pytest.fixture(scope="module")
def fast(split_chunks):
    return FASTTokenizer.fit(split_chunks["train"], vocab_size=1024, scale=10)


def test_dct_is_orthonormal_and_low_frequencies_come_first():
    c = dct_matrix(7)
    np.testing.assert_allclose(c @ c.T, np.eye(7), atol=1e-12)
    x = np.random.default_rng(0).normal(size=(7, 3))
    np.testing.assert_allclose(idct(dct(x)), x, atol=1e-12)
    ramp = np.linspace(-1, 1, 8)[:, None] * np.ones((1, 2))
    coef = dct(ramp)
    assert np.abs(coef[1]).sum() > 5 * np.abs(coef[3:]).sum()  # a smooth motion lives in the low frequencies
    f = FASTTokenizer(None, scale=10, min_token=-100, max_token=100)
    np.testing.assert_array_equal(f.coefficients(ramp)[0], [0, 0])  # row 0 = frequency 0 of every dim


def test_round_trip_and_tokens_on_held_out_bridge_chunks(fast, split_chunks):
    val = split_chunks["val"]
    assert val.shape == (125, H, 7)
    lengths, errs = [], []
    for chunk in val:
        ids = fast.encode(chunk)
        assert all(0 <= i < fast.vocab_size for i in ids)
        dec, ok = fast.decode_with_status(ids, H, 7)
        assert ok
        lengths.append(len(ids))
        errs.append(dec - chunk)
    errs = np.stack(errs)
    # rounding each orthonormal coefficient to 1/scale bounds the RMS by 0.5/scale (plus clipping)
    assert np.sqrt((errs ** 2).mean()) < 0.5 / fast.scale
    assert np.abs(errs).max() < 0.2
    assert np.mean(lengths) < 0.6 * H * 7  # far fewer than one token per value (bins: 35)


def test_save_load_and_lm_mapping(fast, split_chunks, tiny_tokenizer, tmp_path):
    fast.save(tmp_path / "fast")
    again = FASTTokenizer.load(tmp_path / "fast")
    chunk = split_chunks["val"][3]
    assert again.encode(chunk) == fast.encode(chunk)
    n_text = len(tiny_tokenizer)
    at = FASTActionTokenizer(again, tiny_tokenizer)
    ids = at.encode(chunk)
    assert all(n_text <= i < n_text + fast.vocab_size for i in ids)
    np.testing.assert_allclose(at.decode(ids, 7, H), fast.decode(fast.encode(chunk), H, 7))
    dec, ok = at.decode_with_status([5] + ids, 7, H)  # a text token inside the action
    assert not ok and (dec == 0).all()


def test_invalid_sequences_decode_to_the_zero_fallback(fast, split_chunks):
    ids = fast.encode(split_chunks["val"][0])
    for bad in (ids[:-1] if len(ids) > 1 else [], ids + ids, [fast.vocab_size + 5], [-1], []):
        dec, ok = fast.decode_with_status(bad, H, 7)
        assert not ok and dec.shape == (H, 7) and (dec == 0).all()
    with pytest.raises(ValueError, match="vocab_size"):
        FASTTokenizer.fit([np.linspace(-50, 50, 10)[:, None]], vocab_size=64)


def test_out_of_range_values_clip_instead_of_failing(fast):
    wild = np.full((H, 7), 40.0)
    dec, ok = fast.decode_with_status(fast.encode(wild), H, 7)
    assert ok and np.isfinite(dec).all()
