"""Mergeable statistics: moments, the KLL quantile sketch, masks and exclusions, real Bridge values."""
from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest

from vlaflow.schemas import ACTION, STATE
from vlaflow.tokenization.statistics.accumulator import LayoutStats, StatsAccumulator
from vlaflow.tokenization.statistics.kll import KLLSketch, kll_rank_error, rank_error
from vlaflow.tokenization.statistics.moments import Moments
from vlaflow.tokenization.statistics.spec import QUANTILE_KEYS, QUANTILES, StatsSpec

REPO = Path(__file__).resolve().parents[2]


def _split(x, n, rng):
    cuts = np.sort(rng.choice(np.arange(1, len(x)), n - 1, replace=False))
    return np.split(x, cuts)


def test_moments_merge_equals_one_pass_and_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(1e4, 3.0, size=(20_000, 5))  # a large offset: E[x²] - E[x]² would lose digits here
    mask = rng.random(x.shape) > 0.3
    one = Moments.of(x, mask)
    merged = Moments(5)
    for part in _split(np.arange(len(x)), 37, rng):
        merged.merge(Moments.of(x[part], mask[part]))
    for d in range(5):
        v = x[mask[:, d], d]
        assert one.count[d] == merged.count[d] == len(v)
        assert np.isclose(merged.mean[d], v.mean(), rtol=0, atol=1e-9)
        assert np.isclose(merged.std[d], v.std(), rtol=1e-10)
        assert np.isclose(one.std[d], v.std(), rtol=1e-10)
        assert merged.min[d] == v.min() and merged.max[d] == v.max()
    empty = Moments(5).merge(Moments(5))
    assert (empty.count == 0).all() and np.isfinite(empty.mean).all()


def test_sketch_is_numpy_exactly_while_small():
    rng = np.random.default_rng(1)
    x = rng.normal(size=5000)
    sk = KLLSketch(k=256, exact_limit=10_000)
    for part in np.array_split(x, 7):
        sk.merge(KLLSketch(k=256, exact_limit=10_000).update(part))
    assert sk.exact and sk.rank_error == 0.0
    np.testing.assert_array_equal(sk.quantiles(QUANTILES), np.quantile(x, QUANTILES))


@pytest.mark.parametrize("dist", ["normal", "lognormal", "discrete", "sorted_ramp"])
def test_merged_partials_match_one_pass_within_the_sketch_bound(dist):
    """1M values: one-pass sketch vs the merge of 300 partial sketches of random sizes, both against
    exact numpy: rank error ≤ 0.5% (the requirement), and in fact within the KLL bound."""
    rng = np.random.default_rng(2)
    n = 1_000_000
    x = {"normal": lambda: rng.normal(size=n), "lognormal": lambda: rng.lognormal(0, 2, size=n),
         "discrete": lambda: rng.integers(-3, 4, size=n).astype(float) * 0.5,
         "sorted_ramp": lambda: np.linspace(-1, 1, n) ** 3}[dist]()
    exact = np.sort(x)
    one = KLLSketch(seed=0)
    for part in np.array_split(x, 10):  # one stream, fed in batches
        one.update(part)
    partials = [KLLSketch(seed=i + 1).update(p) for i, p in enumerate(_split(x, 300, rng))]
    merged = partials[0]
    for p in partials[1:]:
        merged.merge(p)
    assert not merged.exact and merged.n == n
    bound = kll_rank_error(merged.k)
    assert bound < 0.005
    for sk in (one, merged):
        for q, v in zip(QUANTILES, sk.quantiles(QUANTILES)):
            assert rank_error(exact, v, q) <= bound, (q, v)
    # merge(partials) == one pass, within the bound: their ranks differ by at most two bounds
    for a, b in zip(one.quantiles(QUANTILES), merged.quantiles(QUANTILES)):
        ra, rb = np.searchsorted(exact, a) / n, np.searchsorted(exact, b) / n
        assert abs(ra - rb) <= 2 * bound + 1 / n
    assert sum(len(lv) for lv in merged.levels) < 3.5 * merged.k  # bounded memory


def test_small_sketch_stays_within_its_own_bound():
    rng = np.random.default_rng(3)
    x = rng.normal(size=200_000)
    exact = np.sort(x)
    errs = []
    for seed in range(5):
        parts = [KLLSketch(k=128, exact_limit=0, seed=seed * 100 + i).update(p)
                 for i, p in enumerate(np.array_split(x, 40))]
        m = parts[0]
        for p in parts[1:]:
            m.merge(p)
        errs += [rank_error(exact, v, q) for q, v in zip(QUANTILES, m.quantiles(QUANTILES))]
    assert max(errs) <= kll_rank_error(128)


def test_sketch_pickles_and_continues_identically():
    rng = np.random.default_rng(4)
    a = KLLSketch(k=64, exact_limit=0, seed=9).update(rng.normal(size=10_000))
    b = pickle.loads(pickle.dumps(a))
    more = rng.normal(size=5000)
    a.update(more)
    b.update(more)
    np.testing.assert_array_equal(a.quantiles(QUANTILES), b.quantiles(QUANTILES))


def test_masks_padding_exclusions_and_invalid_actions():
    rng = np.random.default_rng(5)
    n = 300
    action = np.zeros((n, ACTION.width), np.float32)
    amask = np.zeros((n, ACTION.width), bool)
    for slot in ("arm.eef_pos_delta", "arm.gripper", "nav.waypoints"):
        a, b = ACTION.range(slot)
        action[:, a:b] = rng.normal(size=(n, b - a))
        amask[:, a:b] = True
    w0, w1 = ACTION.range("nav.waypoints")
    amask[-50:, w0 + 3:w1] = False  # waypoints past an episode's end are masked, per value
    action[~amask] = 0.0
    valid = np.ones(n, bool)
    valid[::10] = False
    action[::10] = 1e6  # undefined actions must not leak into the statistics
    state = rng.normal(size=(n, STATE.width)).astype(np.float32)
    smask = np.zeros((n, STATE.width), bool)
    smask[:, slice(*STATE.range("arm.eef_pos"))] = True

    acc = StatsAccumulator(StatsSpec())
    acc.update("d", "e", action=action, action_mask=amask, action_valid=valid, state=state, state_mask=smask)
    g = acc.to_json()["groups"]["d/e"]
    assert set(g["action"]) == {"arm.eef_pos_delta", "nav.waypoints"}  # gripper excluded, padding absent
    assert set(g["state"]) == {"arm.eef_pos"}
    pos = g["action"]["arm.eef_pos_delta"]
    v = action[valid, :3].astype(np.float64)
    assert pos["count"] == [valid.sum()] * 3
    np.testing.assert_allclose(pos["mean"], v.mean(0), atol=1e-12)
    np.testing.assert_allclose(pos["max"], v.max(0))
    np.testing.assert_allclose([pos[k] for k in QUANTILE_KEYS], np.quantile(v, QUANTILES, axis=0), atol=1e-12)
    wp = g["action"]["nav.waypoints"]
    keep_last = valid.copy()
    keep_last[-50:] = False
    assert wp["count"][:3] == [valid.sum()] * 3 and wp["count"][3] == keep_last.sum()
    kept = StatsAccumulator(StatsSpec(exclude_action=()))
    kept.update("d", "e", action=action, action_mask=amask, action_valid=valid, state=state, state_mask=smask)
    assert "arm.gripper" in kept.to_json()["groups"]["d/e"]["action"]
    with pytest.raises(ValueError, match="different specs"):
        acc.merge(kept)


def test_padded_positions_inside_a_slot_are_null():
    spec = StatsSpec()
    ls = LayoutStats(ACTION, spec)
    a, _ = ACTION.range("arm.joint_pos")
    x = np.zeros((10, ACTION.width))
    m = np.zeros((10, ACTION.width), bool)
    x[:, a:a + 6] = np.arange(6)
    m[:, a:a + 6] = True  # a 6-DoF arm in the 7-wide slot
    ls.update(x, m)
    st = ls.to_json()["arm.joint_pos"]
    assert st["count"] == [10] * 6 + [0] and st["mean"][6] is None and st["q99"][6] is None
    assert st["std"][:6] == [0.0] * 6


def test_embodiment_view_merges_its_datasets():
    rng = np.random.default_rng(6)
    spec = StatsSpec()
    acc = StatsAccumulator(spec)
    xs = []
    for ds in ("a", "b"):
        x = np.zeros((100, ACTION.width), np.float32)
        x[:, :3] = rng.normal(size=(100, 3))
        m = np.zeros_like(x, bool)
        m[:, :3] = True
        xs.append(x[:, :3])
        acc.update(ds, "robot", action=x, action_mask=m, action_valid=np.ones(100, bool),
                   state=np.zeros((100, STATE.width)), state_mask=np.zeros((100, STATE.width), bool))
    doc = acc.to_json()
    assert set(doc["groups"]) == {"a/robot", "b/robot"}
    emb = doc["embodiments"]["robot"]
    assert emb["datasets"] == ["a", "b"] and emb["rows"] == 200
    np.testing.assert_allclose(emb["action"]["arm.eef_pos_delta"]["q50"],
                               np.quantile(np.concatenate(xs).astype(np.float64), 0.5, axis=0))
    assert doc["groups"]["a/robot"]["rows"] == 100  # the per-group view is untouched


def test_real_bridge_statistics_equal_numpy(bridge_ingest, bridge_rows):
    _, stats = bridge_ingest
    g = stats["groups"]["bridge_dataset/widowx_250"]
    assert g["rows"] == 500 and g["episodes"] == 50 and g["action_rows"] == 450
    r = bridge_rows
    valid = r["action_valid"]
    for slot, layout, vals, mask in (("arm.eef_rot_delta", "action", r["action"], r["action_mask"] & valid[:, None]),
                                     ("arm.eef_pos", "state", r["state"], r["state_mask"])):
        a, b = (ACTION if layout == "action" else STATE).range(slot)
        rows = mask[:, a]
        v = vals[rows, a:b].astype(np.float64)
        st = g[layout][slot]
        assert st["count"] == [len(v)] * (b - a) and st["exact_quantiles"]
        np.testing.assert_allclose(st["mean"], v.mean(0), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(st["std"], v.std(0), rtol=1e-9)
        np.testing.assert_array_equal(st["min"], v.min(0))
        np.testing.assert_allclose([st[k] for k in QUANTILE_KEYS], np.quantile(v, QUANTILES, axis=0), rtol=1e-12)
    assert "arm.gripper" not in g["action"] and "arm.gripper" in g["state"]


def test_tokenization_imports_only_schemas():
    """Layering: tokenization/ sees vlaflow.schemas and nothing else of ours."""
    paths = sorted((REPO / "tokenization").rglob("*.py"))
    assert any(p.parent.name == "statistics" for p in paths)
    for path in paths:
        depth = len(path.relative_to(REPO / "tokenization").parts)  # 1: tokenization/x.py, 2: a subpackage
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level == 0 and mod.startswith("vlaflow"):
                    assert mod == "vlaflow.schemas" or mod.startswith("vlaflow.schemas."), (path.name, mod)
                if node.level > depth:
                    raise AssertionError(f"{path.name}: relative import beyond tokenization/")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("vlaflow") or alias.name.startswith("vlaflow.schemas"), path.name


def test_rows_of_mixed_groups_are_kept_apart():
    rng = np.random.default_rng(7)
    n = 400
    ds = np.where(rng.random(n) < 0.3, "taco_play", "bridge_dataset").astype(object)
    emb = np.where(ds == "taco_play", "franka_panda", "widowx_250").astype(object)
    action = np.zeros((n, ACTION.width), np.float32)
    action[:, 0] = np.where(ds == "taco_play", 100.0, -100.0) + rng.normal(size=n)
    amask = np.zeros((n, ACTION.width), bool)
    amask[:, 0] = True
    first = rng.random(n) < 0.1
    acc = StatsAccumulator(StatsSpec())
    acc.update_rows(ds, emb, action=action, action_mask=amask, action_valid=np.ones(n, bool),
                    state=np.zeros((n, STATE.width)), state_mask=np.zeros((n, STATE.width), bool), is_first=first)
    doc = acc.to_json()["groups"]
    assert set(doc) == {"bridge_dataset/widowx_250", "taco_play/franka_panda"}
    for key, name in (("taco_play/franka_panda", "taco_play"), ("bridge_dataset/widowx_250", "bridge_dataset")):
        sel = ds == name
        st = doc[key]["action"]["arm.eef_pos_delta"]
        assert doc[key]["rows"] == sel.sum() and doc[key]["episodes"] == (first & sel).sum()
        assert st["count"][0] == sel.sum() and st["mean"][0] == pytest.approx(action[sel, 0].astype(np.float64).mean())
        assert st["count"][1] == 0 and st["mean"][1] is None
