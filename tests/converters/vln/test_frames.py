"""Pre-rendered trajectory folders (StreamVLN layout), generated here: frames align with decisions."""
from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
from vlaflow.converters import ConverterOptions, Rejected
from vlaflow.converters.vln import VLNFramesConverter
from vlaflow.converters.vln.errors import UnsafePath
from vlaflow.converters.vln.files import safe_relpath
from vlaflow.schemas import ACTION, Episode, InputError, validate_episode

from .conftest import jpeg, make_frames_folder

CMD = slice(*ACTION.range("nav.command"))
WPT = slice(*ACTION.range("nav.waypoints"))


def convert(path, split=None, **opts):
    conv = VLNFramesConverter(str(path), ConverterOptions(split=split, extra=opts))
    items = [x for u in conv.work_units(1 << 30) for x in conv.read(u)]
    return conv, [x for x in items if isinstance(x, Episode)], [x for x in items if isinstance(x, Rejected)]


@pytest.fixture
def frames_dir(tmp_path):
    root = tmp_path / "R2R"
    entries = make_frames_folder(root)
    return root, entries


def test_frames_align_with_decisions(frames_dir):
    root, entries = frames_dir
    conv, eps, rej = convert(root)
    info = conv.datasets()[0]
    assert not rej and info.name == "vln_frames_r2r" and info.embodiment == "nav_habitat_15deg"
    assert info.cameras == {"primary": "images/<episode>/rgb"}
    assert len(eps) == sum(len(e["instructions"]) for e in entries) == 7
    by_id = {e.episode_id: e for e in eps}
    for entry in entries:
        for k, text in enumerate(entry["instructions"]):
            e = by_id[f"vln_frames_r2r/train/{entry['id']}_{k}"]
            validate_episode(e, verify_images=True)
            acts = entry["actions"]
            assert e.length == len(acts) and e.instruction == text and e.extra["stop_appended"]
            assert e.action_raw[:, 0].astype(int).tolist() == acts[1:] + [0]  # StreamVLN: actions[1:] + [STOP]
            files = sorted((root / entry["video"] / "rgb").iterdir())
            assert e.images["primary"] == [f.read_bytes() for f in files]
            assert not e.state_mask.any()
            a = np.array(acts[1:] + [0])
            cmd = e.action[:, CMD]
            assert np.all(cmd[a == 1, 0] == np.float32(0.25)) and cmd[-1].tolist() == [0, 0, 0, 1]
            # waypoint 1 = the nominal effect of this row's action
            wp1 = e.action[:-1, WPT][:, :3]
            want = np.zeros((len(a) - 1, 3))
            want[a[:-1] == 1, 0] = 0.25
            want[a[:-1] == 2, 2] = math.radians(15)
            want[a[:-1] == 3, 2] = -math.radians(15)
            np.testing.assert_allclose(wp1, want, atol=1e-6)
            assert not e.action_mask[-1, WPT].any()


def test_unpadded_frame_names_sort_naturally(tmp_path):
    root = tmp_path / "EnvDrop"
    entries = make_frames_folder(root, episodes=2, seed=3, naming="{}.jpg")
    _, eps, _ = convert(root, split="val", per_instruction="false")
    assert len(eps) == 2 and eps[0].episode_id == "vln_frames_envdrop/val/1"
    for e, entry in zip(eps, entries, strict=True):
        assert e.images["primary"] == [jpeg(10 * t + entry["id"] - 1) for t in range(len(entry["actions"]))]
        assert e.instructions == entry["instructions"] and e.instruction == entry["instructions"][0]


def test_broken_trajectories_are_quarantined(frames_dir):
    root, entries = frames_dir
    bad = [dict(e) for e in entries]
    bad[0]["video"] = "../../etc"  # unsafe
    bad[1]["video"] = "images/missing_episode"
    (root / entries[2]["video"] / "rgb" / "000.jpg").unlink()  # one frame short
    bad[3]["actions"] = [-1, 1, 9, 1]
    bad.append(dict(entries[3], id=50, actions=[1, 1, 0]))  # no leading -1
    bad.append(dict(entries[3], id=51, actions=[-1, 1, 0, 1]))  # STOP in the middle
    bad.append(dict(entries[3], id=52, video="/abs/path"))
    # a source that already ends with STOP: its trailing frame (after STOP) is dropped
    ok = dict(entries[3], id=53, actions=entries[3]["actions"][:-1] + [0], instructions=["stop here"])
    bad.append(ok)
    (root / "annotations.json").write_text(json.dumps(bad))
    _, eps, rej = convert(root)
    assert [e.episode_id for e in eps] == ["vln_frames_r2r/train/53_0"]
    assert not eps[0].extra["stop_appended"] and eps[0].length == len(ok["actions"]) - 1
    codes = Counter(r.code for r in rej)
    assert codes == {"unsafe_path": 2, "missing_frames": 2 + 3, "unknown_action": 1, "feature_mismatch": 1,
                     "missing_stop": 1}


def test_safe_relpath():
    assert safe_relpath("images/a_b_000001") == "images/a_b_000001"
    assert safe_relpath("./images//x/") == "images/x"
    for bad in ("/etc", "../x", "images/../../x", "C:\\x", "s3://bucket/x", "", None, 5):
        with pytest.raises(UnsafePath):
            safe_relpath(bad)


def test_input_errors(tmp_path):
    with pytest.raises(InputError, match="annotations.json"):
        VLNFramesConverter(str(tmp_path))
    root = tmp_path / "x"
    make_frames_folder(root, episodes=1)
    assert VLNFramesConverter.sniff(str(root)) and not VLNFramesConverter.sniff(str(tmp_path))
    with pytest.raises(InputError, match="turn_deg"):
        VLNFramesConverter(str(root), ConverterOptions(extra={"turn_deg": "20"}))
    conv, _eps, _ = convert(root, turn_deg="30")
    assert conv.datasets()[0].embodiment == "nav_habitat_30deg"


@pytest.mark.slow
def test_ingest_end_to_end(frames_dir, tmp_path):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest
    from vlaflow.pipelines.validate import validate_output

    root, entries = frames_dir
    # one undecodable frame: the pipeline's image check quarantines that episode (both instructions)
    broken = root / entries[1]["video"] / "rgb" / "002.jpg"
    broken.write_bytes(broken.read_bytes()[:30])
    out = tmp_path / "out"
    led = run_ingest(IngestConfig("vln_frames", str(root), str(out), executor="local")).ledger
    assert led["balanced"] and led["episodes_in"] == 7 and led["episodes_out"] == 5
    assert led["by_reason"] == {"undecodable_image": 2}
    problems, stats = validate_output(str(out), check_images=True)
    assert problems == [] and stats["rows"] == sum(len(e["actions"]) * len(e["instructions"])
                                                   for i, e in enumerate(entries) if i != 1)
    t = pq.read_table(next(out.glob("data/**/*.parquet")))
    first = t.filter(pc.equal(t["episode_id"], "vln_frames_r2r/train/1_0"))
    frames = first["images"].combine_chunks().field("primary").field("bytes").to_pylist()
    assert frames == [p.read_bytes() for p in sorted((root / entries[0]["video"] / "rgb").iterdir())]
