"""``vlaflow export lerobot``: the v3.0 files LeRobot reads, and the round trip export → ``lerobot`` converter →
the same normalized actions, states and frames. With a LeRobot environment at hand (``VLAFLOW_LEROBOT_PYTHON``,
default /work/lerobot-venv), LeRobot's own ``LeRobotDataset`` loads the export (``benchmarks/lerobot_check.py``)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from vlaflow.converters import ConverterOptions, describe
from vlaflow.converters.base import Rejected
from vlaflow.converters.lerobot import LeRobotConverter
from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.media import decode_rgb
from vlaflow.pipelines.cli import app
from vlaflow.pipelines.corpus import Corpus
from vlaflow.pipelines.export_lerobot import export_lerobot
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.validate import validate_output
from vlaflow.schemas import ACTION, InputError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests/fixtures/lerobot"
LEROBOT_PY = Path(os.environ.get("VLAFLOW_LEROBOT_PYTHON", "/work/lerobot-venv/bin/python"))


def _fixture(name: str) -> Path:
    if not (FIXTURES / name / "meta/info.json").is_file():
        pytest.skip(f"LeRobot fixture {name} missing (scripts/make_lerobot_fixtures.py)")
    return FIXTURES / name


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The LeRobot fixtures and a synthetic Bridge dataset ingested into one root; aloha twice, once as MP4."""
    tmp = tmp_path_factory.mktemp("export")
    root = tmp / "corpus"
    for name in ("so100_images", "aloha_video", "custom_arm"):
        run_ingest(IngestConfig("lerobot", str(_fixture(name)), str(root), executor="local"))
    run_ingest(IngestConfig("lerobot", str(_fixture("aloha_video")), str(root),
                            ConverterOptions(extra={"storage": "mp4", "dataset": "aloha_mp4"}), executor="local"))
    bridge = write_sample_dataset(tmp / "bridge_src", episodes=3, steps=4, shards=1, seed=0)
    run_ingest(IngestConfig("openx_rlds", str(bridge), str(root), executor="local"))
    return tmp, root


def test_lerobot_written_datasets_convert_and_validate(corpus):
    """The issue's first bar: datasets LeRobot wrote convert and pass every invariant of ``vlaflow validate``."""
    _, root = corpus
    problems, stats = validate_output(str(root), check_images=True)
    assert problems == [] and stats["episodes"] == 3 + 2 + 2 + 2 + 6
    assert "lerobot" in {r["name"] for r in describe()}


def _back(path: Path):
    conv = LeRobotConverter(str(path))
    items = [i for u in conv.work_units(1 << 30) for i in conv.read(u)]
    assert not [i for i in items if isinstance(i, Rejected)], items
    return conv, items


def _episodes(root: Path, dataset: str):
    c = Corpus.open(str(root))
    ids = [e for e, d in zip(c.episodes()["episode_id"].to_pylist(), c.episodes()["dataset"].to_pylist())
           if str(d) == dataset]
    return c, ids


def _column(t, col):
    return np.asarray(t[col].to_pylist(), np.float32)


@pytest.mark.parametrize("dataset", ["so100_images", "bridge_dataset"])
def test_images_round_trip_keeps_values_and_bytes(corpus, dataset, tmp_path):
    _, root = corpus
    res = export_lerobot(str(root), dataset, str(tmp_path / "lr"))
    conv, back = _back(tmp_path / "lr")
    c, ids = _episodes(root, dataset)
    assert len(back) == len(ids) == res.episodes
    split_of = dict(zip(c.episodes()["episode_id"].to_pylist(), c.episodes()["split"].to_pylist()))
    assert [ep.split for ep in back] == [split_of[e] for e in ids]  # splits survive as info.json ranges
    assert conv.datasets()[0].embodiment == c.datasets()[dataset]["embodiment"] and conv.warnings() == []
    for eid, ep in zip(ids, back):
        t = c.read_episode(eid)
        np.testing.assert_array_equal(ep.action, _column(t, "action"))
        np.testing.assert_array_equal(ep.state, _column(t, "state"))
        np.testing.assert_array_equal(ep.action_mask, np.asarray(t["action_mask"].to_pylist()[0]))
        assert ep.instruction == t["instruction"].to_pylist()[0]
        for role in c.datasets()[dataset]["cameras"]:
            stored = [cell["bytes"] for cell in t["images"].combine_chunks().field(role).to_pylist()]
            assert ep.images[role] == stored  # the corpus's JPEG/PNG bytes, byte for byte


def test_video_round_trip(corpus, tmp_path):
    _, root = corpus
    res = export_lerobot(str(root), "aloha_video", str(tmp_path / "lr"), mode="video")
    assert res.cameras == {"observation.images.primary": "video"}
    assert len(list((tmp_path / "lr/videos").rglob("*.mp4"))) == 1  # both episodes in one file
    _, back = _back(tmp_path / "lr")
    c, ids = _episodes(root, "aloha_video")
    for eid, ep in zip(ids, back):
        t = c.read_episode(eid)
        np.testing.assert_array_equal(ep.action, _column(t, "action"))
        want = c.frames(eid, "primary")
        got = [decode_rgb(b, "x") for b in ep.images["primary"]]
        diff = np.array([[np.abs(a.astype(int) - b.astype(int)).mean() for b in want] for a in got])
        assert diff.diagonal().max() < 5.0, diff.diagonal()  # H.264 + JPEG over JPEG of AV1: a few levels
        assert list(diff.argmin(axis=1)) == list(range(len(want)))  # and each is nearest its own frame
    ep_meta = pq.read_table(tmp_path / "lr/meta/episodes/chunk-000/file-000.parquet").to_pylist()
    key = "videos/observation.images.primary"
    assert [e[f"{key}/from_timestamp"] for e in ep_meta] == [0.0, 10 / 50]
    assert ep_meta[1][f"{key}/to_timestamp"] == pytest.approx(20 / 50)


def test_frames_stored_as_mp4_are_exported_as_png(corpus, tmp_path):
    _, root = corpus
    export_lerobot(str(root), "aloha_mp4", str(tmp_path / "lr"))
    _, back = _back(tmp_path / "lr")
    c, ids = _episodes(root, "aloha_mp4")
    for eid, ep in zip(ids, back):
        for got, want in zip(ep.images["primary"], c.frames(eid, "primary")):
            assert got[:4] == b"\x89PNG"
            np.testing.assert_array_equal(decode_rgb(got, "x"), want)


def test_v3_metadata_files(corpus, tmp_path):
    _, root = corpus
    export_lerobot(str(root), "bridge_dataset", str(tmp_path / "lr"))
    d = tmp_path / "lr"
    info = json.loads((d / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "widowx_250"
    assert (info["total_episodes"], info["total_frames"], info["fps"]) == (6, 24, 5)
    assert info["video_path"] is None and info["splits"] == {"train": "0:3", "val": "3:6"}
    names = info["features"]["action"]["names"]
    assert names[:3] == ["arm.eef_pos_delta[0]", "arm.eef_pos_delta[1]", "arm.eef_pos_delta[2]"]
    assert names[-1] == "arm.gripper[0]" and info["features"]["action"]["shape"] == [len(names)]
    assert all(n.split("[")[0] in ACTION for n in names)
    cams = [k for k, f in info["features"].items() if f["dtype"] == "image"]
    assert cams and all(info["features"][k]["shape"][2] == 3 for k in cams)
    stats = json.loads((d / "meta/stats.json").read_text())
    a = stats["action"]
    assert a["count"] == [24] and len(a["q01"]) == len(names)
    assert np.all(np.asarray(a["min"]) <= np.asarray(a["q01"])) and np.all(np.asarray(a["q01"]) <= np.asarray(a["q50"]))
    assert np.all(np.asarray(a["q99"]) <= np.asarray(a["max"]))
    assert np.asarray(stats[cams[0]]["mean"]).shape == (3, 1, 1)
    tasks = pd.read_parquet(d / "meta/tasks.parquet")  # LeRobot reads the task strings from the index
    assert list(tasks["task_index"]) == list(range(len(tasks))) and all(isinstance(s, str) for s in tasks.index)
    eps = pq.read_table(d / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(e["dataset_from_index"], e["dataset_to_index"], e["length"]) for e in eps] == [
        (4 * i, 4 * i + 4, 4) for i in range(6)]
    data = pq.ParquetFile(d / "data/chunk-000/file-000.parquet")
    assert data.metadata.num_row_groups == 6  # one per episode
    t = data.read()
    assert t["index"].to_pylist() == list(range(24)) and t["frame_index"].to_pylist()[:5] == [0, 1, 2, 3, 0]
    np.testing.assert_allclose(t["timestamp"].to_pylist()[:4], [0, 0.2, 0.4, 0.6], atol=1e-7)


def test_errors_are_one_line(corpus, tmp_path):
    _, root = corpus
    with pytest.raises(InputError, match="not in"):
        export_lerobot(str(root), "nope", str(tmp_path / "a"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/file.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        export_lerobot(str(root), "so100_images", str(tmp_path / "busy"))
    with pytest.raises(InputError, match="not a LeRobot dataset folder"):
        export_lerobot(str(root), "so100_images", str(tmp_path / "busy"), overwrite=True)
    assert (tmp_path / "busy/file.txt").exists()
    with pytest.raises(InputError, match="export mode"):
        export_lerobot(str(root), "so100_images", str(tmp_path / "m"), mode="gif")
    r = CliRunner().invoke(app, ["export", "lerobot", str(root), "--dataset", "nope", "--to", str(tmp_path / "b")])
    assert r.exit_code == 2 and "not in" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["export", "lerobot", str(root), "--dataset", "so100_images", "--to",
                                 str(tmp_path / "c"), "--video"])
    assert r.exit_code == 0, r.output
    assert "3 episodes" in r.output and (tmp_path / "c/videos").is_dir()
    r = CliRunner().invoke(app, ["export", "lerobot", str(root), "--dataset", "so100_images", "--to",
                                 str(tmp_path / "c"), "--overwrite"])
    assert r.exit_code == 0 and not (tmp_path / "c/videos").exists()


def test_lerobot_loads_the_export(corpus, tmp_path):
    """LeRobot's own LeRobotDataset, in its own environment (its pins conflict with ours)."""
    if not LEROBOT_PY.exists():
        pytest.skip(f"no LeRobot environment at {LEROBOT_PY} (set VLAFLOW_LEROBOT_PYTHON; benchmarks/README.md)")
    _, root = corpus
    export_lerobot(str(root), "so100_images", str(tmp_path / "img"))
    export_lerobot(str(root), "aloha_video", str(tmp_path / "vid"), mode="video")
    out = subprocess.run([str(LEROBOT_PY), str(REPO / "benchmarks/lerobot_check.py"), str(tmp_path / "img"),
                          str(tmp_path / "vid"), "--json", str(tmp_path / "check.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    res = json.loads((tmp_path / "check.json").read_text())["results"]
    assert [r["frames"] for r in res] == [18, 20]


def test_files_roll_over_without_splitting_an_episode(corpus, tmp_path, monkeypatch):
    import vlaflow.pipelines.export_lerobot as ex

    _, root = corpus
    monkeypatch.setattr(ex, "DATA_FILE_MB", 1e-6)  # every episode past the limit: one file each
    res = export_lerobot(str(root), "aloha_video", str(tmp_path / "lr"), mode="video")
    eps = pq.read_table(tmp_path / "lr/meta/episodes/chunk-000/file-000.parquet").to_pylist()
    key = "videos/observation.images.primary"
    assert [(e["data/file_index"], e[f"{key}/file_index"], e[f"{key}/from_timestamp"]) for e in eps] == [
        (0, 0, 0.0), (1, 1, 0.0)]
    assert res.files == 4 and len(list((tmp_path / "lr/videos").rglob("*.mp4"))) == 2
    _, back = _back(tmp_path / "lr")
    c, ids = _episodes(root, "aloha_video")
    for eid, ep in zip(ids, back):
        np.testing.assert_array_equal(ep.action, _column(c.read_episode(eid), "action"))
    if LEROBOT_PY.exists():
        out = subprocess.run([str(LEROBOT_PY), str(REPO / "benchmarks/lerobot_check.py"), str(tmp_path / "lr")],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def test_a_dataset_without_slots_exports_its_raw_values(corpus, tmp_path):
    _, root = corpus
    res = export_lerobot(str(root), "custom_arm", str(tmp_path / "lr"))
    assert res.action_names == ["action[a]", "action[b]", "action[c]"] and res.state_names == []
    assert any("raw source values" in w for w in res.warnings)
    conv, back = _back(tmp_path / "lr")
    assert conv.datasets()[0].embodiment == "generic"
    c, ids = _episodes(root, "custom_arm")
    for eid, ep in zip(ids, back):
        np.testing.assert_array_equal(ep.action_raw, _column(c.read_episode(eid), "action_raw"))
        assert not ep.action_mask.any()


def test_a_failed_export_leaves_no_half_written_folder(corpus, tmp_path, monkeypatch):
    import vlaflow.pipelines.export_lerobot as ex

    _, root = corpus

    def boom(*a, **k):
        raise InputError("camera frames of several sizes")

    monkeypatch.setattr(ex, "_write_tasks", boom)  # fails after the data files are written
    with pytest.raises(InputError, match="several sizes"):
        export_lerobot(str(root), "so100_images", str(tmp_path / "lr"))
    assert not (tmp_path / "lr").exists()
