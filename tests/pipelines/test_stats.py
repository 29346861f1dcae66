"""`vlaflow stats`: the Ray job on real ingest output, column pruning, merging, the cache, the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.stats import STATS, STATS_COLUMNS, partial_from_table, run_stats
from vlaflow.schemas import ACTION, STATE, Col, InputError
from vlaflow.tokenization.statistics.accumulator import StatsAccumulator
from vlaflow.tokenization.statistics.kll import kll_rank_error
from vlaflow.tokenization.statistics.spec import QUANTILE_KEYS, QUANTILES, StatsSpec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bridge_out(bridge_fixture, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("stats_bridge_out")
    run_ingest(IngestConfig("openx_rlds", str(bridge_fixture), str(out)))
    return out


def _read_all(out: Path):
    files = sorted(str(p) for p in out.glob("data/**/*.parquet"))
    return pq.read_table(files, columns=STATS_COLUMNS)


def _fixed(t, col, w):
    return t[col].combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, w)


def _poison_columns(path: Path, prefixes: tuple[str, ...]) -> int:
    """Overwrite the bytes of every column chunk whose path starts with a prefix (file size and
    footer unchanged): any reader that touches those columns fails or gets garbage."""
    meta = pq.ParquetFile(path).metadata
    data = bytearray(path.read_bytes())
    hit = 0
    for r in range(meta.num_row_groups):
        rg = meta.row_group(r)
        for i in range(rg.num_columns):
            c = rg.column(i)
            if c.path_in_schema.startswith(prefixes):
                start = c.dictionary_page_offset or c.data_page_offset
                data[start:start + c.total_compressed_size] = b"\xAB" * c.total_compressed_size
                hit += c.total_compressed_size
    path.write_bytes(bytes(data))
    return hit


def test_stats_job_on_real_output(bridge_out, tmp_path):
    res = run_stats(str(bridge_out), force=True)
    assert not res.cached and (bridge_out / STATS).exists()
    assert Col.IMAGES not in STATS_COLUMNS and Col.ACTION_RAW not in STATS_COLUMNS
    doc = json.loads((bridge_out / STATS).read_text())
    assert doc == res.stats
    manifest = (bridge_out / "meta/manifest.json").read_bytes()
    import hashlib

    assert doc["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert doc["rows"] == 500 and doc["shards"] == 2 and doc["quantile_keys"] == list(QUANTILE_KEYS)
    g = doc["groups"]["bridge_dataset/widowx_250"]
    assert (g["rows"], g["episodes"], g["action_rows"]) == (500, 50, 450)
    assert set(g["action"]) == {"arm.eef_pos_delta", "arm.eef_rot_delta"}  # gripper excluded, padding absent
    assert set(g["state"]) == {"arm.eef_pos", "arm.eef_rot", "arm.gripper"}
    assert doc["embodiments"]["widowx_250"]["datasets"] == ["bridge_dataset"]
    # equal to exact numpy over the same values
    t = _read_all(bridge_out)
    act, amask = _fixed(t, Col.ACTION, ACTION.width), _fixed(t, Col.ACTION_MASK, ACTION.width)
    valid = t[Col.ACTION_VALID].to_numpy()
    v = act[valid & amask[:, 0]][:, 0:6].astype(np.float64)
    st = {k: g["action"]["arm.eef_pos_delta"][k] + g["action"]["arm.eef_rot_delta"][k]
          for k in ("mean", "std", "min", "max", *QUANTILE_KEYS)}
    np.testing.assert_allclose(st["mean"], v.mean(0), rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(st["std"], v.std(0), rtol=1e-9)
    np.testing.assert_array_equal(st["max"], v.max(0))
    np.testing.assert_allclose([st[k] for k in QUANTILE_KEYS], np.quantile(v, QUANTILES, axis=0), rtol=1e-12)
    s = _fixed(t, Col.STATE, STATE.width)[:, 13].astype(np.float64)  # arm.gripper (state)
    assert g["state"]["arm.gripper"]["q50"] == [float(np.quantile(s, 0.5))]
    # the in-process pass (one partial per row group) writes the same numbers
    local = run_stats(str(bridge_out), executor="local", force=True).stats
    assert local["cache_key"] == doc["cache_key"]
    assert_same_stats(local["groups"], doc["groups"])


def assert_same_stats(a, b, rtol=1e-12):
    """Equal up to float64 summation order (partials may be cut at other rows)."""
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same_stats(a[k], b[k], rtol)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_stats(x, y, rtol)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=rtol, abs=1e-15)
    else:
        assert a == b


def test_images_and_raw_vectors_are_never_read(bridge_out, tmp_path):
    """Poison every image, raw-vector and text column chunk of a copy: the Ray job still gives the
    same statistics, so it never reads them (while a full read of the copy fails)."""
    import shutil

    res = run_stats(str(bridge_out))
    copy = tmp_path / "poisoned"
    shutil.copytree(bridge_out, copy)
    (copy / STATS).unlink()
    poisoned = 0
    for f in sorted(copy.glob("data/**/*.parquet")):
        poisoned += _poison_columns(f, ("images.", "action_raw", "state_raw", "instruction", "episode_id"))
    assert poisoned > 5_000_000  # the cameras are almost all of the bytes
    with pytest.raises((OSError, ValueError)):  # pyarrow's ArrowInvalid/ArrowIOError derive from these
        for f in sorted(copy.glob("data/**/*.parquet")):
            pq.read_table(f)
    again = run_stats(str(copy))
    assert not again.cached and again.stats["groups"] == res.stats["groups"]


def test_second_run_is_instant_and_reads_nothing(bridge_out, monkeypatch):
    import vlaflow.pipelines.stats as stats_mod

    run_stats(str(bridge_out))
    before = (bridge_out / STATS).read_bytes()

    def boom(*a, **k):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(stats_mod, "run_stage", boom)
    t0 = time.perf_counter()
    res = run_stats(str(bridge_out))
    assert res.cached and time.perf_counter() - t0 < 0.5
    assert (bridge_out / STATS).read_bytes() == before
    # a different spec or split is a different key: recomputed (here: would hit the patched reader)
    with pytest.raises(AssertionError, match="cache should have answered"):
        run_stats(str(bridge_out), StatsSpec(exclude_action=()))
    with pytest.raises(AssertionError, match="cache should have answered"):
        run_stats(str(bridge_out), splits=["train"])


def test_splits_and_a_changed_manifest(bridge_out, tmp_path):
    res = run_stats(str(bridge_out), splits=["val"], force=True)
    g = res.stats["groups"]["bridge_dataset/widowx_250"]
    assert res.stats["splits"] == ["val"] and g["rows"] == 250 and g["episodes"] == 25
    with pytest.raises(InputError, match="no shards"):
        run_stats(str(bridge_out), splits=["test"])
    with pytest.raises(InputError, match="not a vlaflow ingest output"):
        run_stats(str(tmp_path))
    # the cache is keyed by the manifest's content: a copy with a changed manifest recomputes
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bridge_out, copy)
    m = json.loads((copy / "meta/manifest.json").read_text())
    m["shards"] = [s for s in m["shards"] if s["split"] == "train"]
    (copy / "meta/manifest.json").write_text(json.dumps(m))
    res = run_stats(str(copy))
    assert not res.cached and res.stats["rows"] == 250
    assert run_stats(str(copy)).cached


def test_partials_of_many_shards_merge_to_the_one_pass(tmp_path, ray_local):
    """Many small shards → many Ray blocks → many partials; the merge equals one pass over all rows."""
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset

    src = write_sample_dataset(tmp_path / "src", episodes=30, steps=7, shards=6)
    out = tmp_path / "out"
    run_ingest(IngestConfig("openx_rlds", str(src), str(out), target_shard_mb=0.05))
    manifest = json.loads((out / "meta/manifest.json").read_text())
    assert len(manifest["shards"]) >= 6
    for spec in (StatsSpec(), StatsSpec(k=16, exact_limit=16)):  # exact, and a tiny sketch that compacts
        doc = run_stats(str(out), spec, force=True).stats
        one = StatsAccumulator(spec)
        one.merge(partial_from_table(_read_all(out).combine_chunks(), spec, seed=0))
        want = one.to_json()
        got_g, want_g = doc["groups"], want["groups"]
        assert got_g.keys() == want_g.keys()
        for key in got_g:
            assert got_g[key]["rows"] == want_g[key]["rows"] == 420
            for layout in ("action", "state"):
                assert got_g[key][layout].keys() == want_g[key][layout].keys()
                for slot, st in got_g[key][layout].items():
                    w = want_g[key][layout][slot]
                    assert st["count"] == w["count"]
                    for k in ("mean", "std", "min", "max"):
                        np.testing.assert_allclose(st[k], w[k], rtol=1e-9, atol=1e-12)
                    if spec.k >= 2048:
                        for k in QUANTILE_KEYS:
                            np.testing.assert_allclose(st[k], w[k], rtol=1e-12)
                    else:  # both sketches within their rank bound of exact, so of each other
                        t = _read_all(out)
                        lay = ACTION if layout == "action" else STATE
                        vals = _fixed(t, layout, lay.width)
                        msk = _fixed(t, f"{layout}_mask", lay.width)
                        if layout == "action":
                            msk = msk & t[Col.ACTION_VALID].to_numpy()[:, None]
                        a = lay.range(slot)[0]
                        bound = kll_rank_error(spec.k)
                        exact = np.sort(vals[msk[:, a], a].astype(np.float64))
                        for q, k in zip(QUANTILES, QUANTILE_KEYS):
                            for est in (st[k][0], w[k][0]):
                                lo = np.searchsorted(exact, est, "left") / len(exact)
                                hi = np.searchsorted(exact, est, "right") / len(exact)
                                assert lo - bound <= q <= hi + bound  # k = 16: a coarse sketch, within its bound


VLAFLOW = [sys.executable, "-m", "vlaflow.pipelines.cli"]


def test_cli_stats(bridge_out, tmp_path):
    env = {**os.environ, "RAY_ADDRESS": ""}
    (bridge_out / STATS).unlink(missing_ok=True)
    r = subprocess.run([*VLAFLOW, "stats", str(bridge_out), "--num-cpus", "2", "--executor", "ray"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "bridge_dataset/widowx_250" in r.stderr and "computed on a local Ray instance" in r.stderr
    assert json.loads((bridge_out / STATS).read_text())["rows"] == 500
    r = subprocess.run([*VLAFLOW, "stats", str(bridge_out)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "read back from the cache" in r.stderr
    for args, msg in (([str(tmp_path)], "not a vlaflow ingest output"),
                      ([str(bridge_out), "--exclude", "gripper"], "--exclude expects")):
        r = subprocess.run([*VLAFLOW, "stats", *args], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_trajectory_statistics_pool_the_horizon_and_respect_masks(tmp_path):
    """egodex rows: per trajectory slot, moments over every unmasked horizon step; robot rows (null) add nothing."""
    from vlaflow.converters.base import ConverterOptions
    from vlaflow.converters.ego import EgoDexConverter
    from vlaflow.converters.ego.egodex_synth import write_egodex_episode
    from vlaflow.schemas import TRAJECTORY
    from vlaflow.schemas import episodes_to_table

    for i in range(2):
        write_egodex_episode(tmp_path / "src", i, seed=i, occlude=("rightThumbTip", range(0, 20)))
    conv = EgoDexConverter(str(tmp_path / "src"), ConverterOptions())
    eps = [ep for u in conv.work_units(1 << 26) for ep in conv.read(u)]
    doc = partial_from_table(episodes_to_table(eps), StatsSpec()).to_json()
    traj = doc["groups"]["egodex/human_hands"]["trajectory"]
    vals = np.concatenate([ep.trajectory for ep in eps]).reshape(-1, TRAJECTORY.width)
    mask = np.concatenate([ep.trajectory_mask for ep in eps]).reshape(-1, TRAJECTORY.width)
    for name in ("right_hand.wrist_pos", "right_hand.fingertips", "left_hand.wrist_uv"):
        a, b = TRAJECTORY.range(name)
        for d in range(b - a):
            col = vals[mask[:, a + d], a + d].astype(np.float64)
            assert traj[name]["count"][d] == len(col) > 0
            assert traj[name]["mean"][d] == pytest.approx(col.mean(), rel=1e-5, abs=1e-7)
            assert traj[name]["max"][d] == pytest.approx(col.max(), rel=1e-6)
    # the occluded thumb has fewer values than the index finger
    assert traj["right_hand.fingertips"]["count"][0] < traj["right_hand.fingertips"]["count"][3]
    assert "points.xyz" not in traj  # never filled
