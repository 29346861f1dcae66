"""Normalization with the real Bridge statistics: every mode, exact inverse, masks, zero range."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from vlaflow.schemas import ACTION, STATE
from vlaflow.tokenization.normalization import Normalizer

GROUP = dict(dataset="bridge_dataset", embodiment="widowx_250")


@pytest.mark.parametrize("mode", ["zscore", "bounds", "quantile"])
def test_round_trip_is_exact_and_ranges_hold(bridge_ingest, bridge_rows, mode):
    _, stats = bridge_ingest
    x = bridge_rows["action"][bridge_rows["action_valid"]]
    norm = Normalizer(stats, mode, clip=False)
    y = norm.normalize(x, **GROUP)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    back = norm.denormalize(y, **GROUP)
    np.testing.assert_allclose(back, x, rtol=1e-6, atol=1e-7)  # float32 storage of y: rounding only
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(norm.denormalize(norm.normalize(x64, **GROUP), **GROUP), x64, rtol=1e-12, atol=1e-15)
    a, b = ACTION.range("arm.eef_pos_delta")
    if mode == "zscore":
        np.testing.assert_allclose(y[:, a:b].astype(np.float64).mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(y[:, a:b].astype(np.float64).std(0), 1, atol=1e-5)
    elif mode == "bounds":
        assert y[:, a:b].min() >= -1 - 1e-6 and y[:, a:b].max() <= 1 + 1e-6
        np.testing.assert_allclose(y[:, a:b].min(0), -1, atol=1e-6)
    else:  # q01/q99 → ±1: about 1% of values on each side fall outside before clipping
        outside = (np.abs(y[:, a:b]) > 1).mean()
        assert 0.005 < outside < 0.04
    # the gripper (excluded from statistics) and the padding pass through untouched
    g = ACTION.range("arm.gripper")[0]
    np.testing.assert_array_equal(y[:, g], x[:, g])
    pad = ~bridge_rows["action_mask"][0]
    assert (y[:, pad] == 0).all()


def test_quantile_mode_clips_and_inverts_inside_the_range(bridge_ingest, bridge_rows):
    _, stats = bridge_ingest
    x = bridge_rows["action"][bridge_rows["action_valid"]]
    norm = Normalizer(stats, "quantile")
    y = norm.normalize(x, **GROUP)
    a, b = ACTION.range("arm.eef_rot_delta")
    assert y[:, a:b].min() == -1 and y[:, a:b].max() == 1
    st = stats["groups"]["bridge_dataset/widowx_250"]["action"]["arm.eef_rot_delta"]
    back = norm.denormalize(y, **GROUP)[:, a:b]
    inside = (x[:, a:b] >= st["q01"]) & (x[:, a:b] <= st["q99"])
    np.testing.assert_allclose(back[inside], x[:, a:b][inside], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(back.max(0), st["q99"], rtol=1e-6)  # clipped values come back as q99


def test_state_per_slot_modes_and_embodiment_lookup(bridge_ingest, bridge_rows):
    _, stats = bridge_ingest
    s = bridge_rows["state"]
    norm = Normalizer(stats, "zscore", layout="state", by="embodiment",
                      slot_modes={"arm.eef_rot": "bounds", "*.gripper": "none"})
    y = norm.normalize(s, embodiment="widowx_250")
    a, b = STATE.range("arm.eef_rot")
    np.testing.assert_allclose(y[:, a:b].min(0), -1, atol=1e-6)
    g = STATE.range("arm.gripper")[0]
    np.testing.assert_array_equal(y[:, g], s[:, g])
    np.testing.assert_allclose(norm.denormalize(y, embodiment="widowx_250"), s, rtol=1e-6, atol=1e-8)
    # one group per dataset: the dataset alone identifies it
    np.testing.assert_array_equal(Normalizer(stats, "zscore", layout="state").normalize(s, dataset="bridge_dataset"),
                                  Normalizer(stats, "zscore", layout="state").normalize(s, **GROUP))
    with pytest.raises(KeyError, match="no statistics"):
        Normalizer(stats).normalize(s, dataset="nope", embodiment="widowx_250")
    with pytest.raises(ValueError, match="unknown normalization mode"):
        Normalizer(stats, "minmax")


@pytest.mark.parametrize("mode", ["zscore", "bounds", "quantile"])
def test_zero_range_slot_is_safe(bridge_ingest, mode):
    _, stats = bridge_ingest
    stats = copy.deepcopy(stats)
    st = stats["groups"]["bridge_dataset/widowx_250"]["action"]["arm.eef_pos_delta"]
    for k in ("mean", "min", "max", "q01", "q10", "q50", "q90", "q99"):
        st[k][2] = 0.25  # a constant value: std 0, min == max, q01 == q99
    st["std"][2] = 0.0
    norm = Normalizer(stats, mode)
    x = np.zeros((3, ACTION.width), np.float32)
    x[:, 2] = [0.25, 0.25, 0.3]
    y = norm.normalize(x, **GROUP)
    assert np.isfinite(y).all() and y[0, 2] == 0 and y[1, 2] == 0
    assert abs(y[2, 2]) <= 0.05 + 1e-7  # no division by ~0: the offset passes at scale 1
    np.testing.assert_allclose(norm.denormalize(y, **GROUP)[:, 2], x[:, 2], rtol=1e-6)
