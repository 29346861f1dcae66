"""End to end through Ray, one run per sim converter: the output validates, the ledger balances
(bad episodes quarantined with their names), raw actions reconcile with the source."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from vlaflow.converters import ConverterOptions
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.layout import EPISODES, LEDGER, MANIFEST, QUARANTINE
from vlaflow.pipelines.validate import validate_output
from vlaflow.schemas import Col

pytestmark = pytest.mark.slow


def ingest(tmp_path, converter, src, **opts):
    out = tmp_path / "out"
    result = run_ingest(IngestConfig(converter, str(src), str(out), ConverterOptions(extra=opts), executor="local"))
    problems, stats = validate_output(str(out), check_images=True)
    assert problems == []
    led = json.loads((out / LEDGER).read_text())
    assert led["balanced"] and led["episodes_in"] == led["episodes_out"] + led["episodes_quarantined"]
    return out, result, led, stats


def quarantined(out):
    return sorted((r["episode_key"].rsplit("/", 1)[-1], r["code"])
                  for r in map(json.loads, (out / QUARANTINE).read_text().splitlines()))


def table(out):
    return pq.read_table(sorted(out.glob("data/**/*.parquet")))


def test_robomimic_ingest(tmp_path, sim_fixtures, gen):
    out, result, led, stats = ingest(tmp_path, "robomimic", gen.ROBOMIMIC_REPLAY)
    assert (led["episodes_out"], led["steps_out"], led["episodes_quarantined"]) == (2, 992, 0)
    manifest = json.loads((out / MANIFEST).read_text())
    meta = manifest["datasets"]["robomimic_lift"]
    assert meta["image_transform"] == "flip_vertical" and meta["embodiment"] == "panda_osc_pose"
    t = table(out)
    with h5py.File(gen.ROBOMIMIC_REPLAY) as f:
        want = np.concatenate([f["data/demo_0/actions"][()], f["data/demo_1/actions"][()]]).astype(np.float32)
    raw = t[Col.ACTION_RAW].combine_chunks().values.to_numpy().reshape(-1, 7)
    ids = t[Col.EPISODE_ID].to_pylist()
    order = np.argsort([0 if "demo_0" in i else 1 for i in ids], kind="stable")
    assert raw[order].tobytes() == want.tobytes()


def test_libero_ingest_quarantines_nan_demo(tmp_path, gen):
    src = tmp_path / "libero_object" / "pick_up_the_ketchup_and_place_it_in_the_basket_demo.hdf5"
    gen.write_libero(src, demos=(5, 6, 7), nan_in=1, instruction="pick up the ketchup and place it in the basket")
    out, result, led, stats = ingest(tmp_path, "auto", src.parent)
    assert result.manifest["converter"] == "libero"
    assert (led["episodes_in"], led["episodes_out"], led["steps_out"]) == (3, 2, 12)
    assert quarantined(out) == [("demo_1", "non_finite_value")] and led["steps_quarantined"] == 6
    eps = pq.read_table(out / EPISODES).to_pylist()
    assert {e["instruction"] for e in eps} == {"pick up the ketchup and place it in the basket"}


def test_robotwin_ingest_with_bad_and_untrusted_episodes(tmp_path, gen):
    root = tmp_path / "block_handover"
    gen.write_robotwin2(root / "demo_clean", 3, bad_jpeg_in=2)
    gen.write_robotwin_pickles(root / "demo_clean" / "cache" / "episode9")
    out, result, led, stats = ingest(tmp_path, "robotwin", root)
    assert (led["episodes_in"], led["episodes_out"], led["episodes_quarantined"]) == (4, 2, 2)
    assert result.manifest["datasets"].keys() == {"robotwin_block_handover"}
    assert quarantined(out) == [("demo_clean__cache__episode9", "untrusted_pickle"),
                                ("demo_clean__data__episode2", "undecodable_image")]
    eps = pq.read_table(out / EPISODES).to_pylist()
    assert all(len(e["instructions"]) == 3 for e in eps)
    t = table(out)
    assert t[Col.ACTION_VALID].to_pylist().count(False) == 2  # one undefined last action per episode


def test_maniskill_ingest_auto(tmp_path, gen):
    gen.write_maniskill(tmp_path / "src", n=3, t=4, short_obs_in=2)
    out, result, led, stats = ingest(tmp_path, "auto", tmp_path / "src")
    assert result.manifest["converter"] == "maniskill"
    assert (led["episodes_out"], led["steps_out"]) == (2, 10) and quarantined(out) == [("traj_2", "length_mismatch")]
    t = table(out)
    assert t[Col.IMAGES].combine_chunks().field("primary").null_count == 0
