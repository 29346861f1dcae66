"""The ``lerobot`` converter on datasets LeRobot 0.4.4 wrote itself (v3.0: images in parquet, AV1 video with
several episodes per file, an unknown robot), the same datasets in v2.1's layout, and copies with faults."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from vlaflow.converters import ConverterOptions
from vlaflow.converters import sniff as sniff_converter
from vlaflow.media import decode_rgb
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.validate import validate_output
from vlaflow.schemas import ACTION, STATE, InputError, validate_episode

SO100 = "so100_images"
ALOHA = "aloha_video"


def _slot(layout, name, values):
    a, b = layout.range(name)
    return values[:, a:b]


def test_so100_v3_images_map_names_to_slots_and_keep_png_bytes(lr):
    conv, eps, rej = lr.convert(lr.fixture(SO100))
    exp = lr.expected(SO100)
    assert not rej and len(eps) == 3 and conv.warnings() == []
    info = conv.datasets()[0]
    assert (info.embodiment, info.fps, info.cameras) == ("so100_follower", 30,
                                                        {"primary": "observation.images.front",
                                                         "wrist": "observation.images.wrist"})
    for ep, want in zip(eps, exp["episodes"]):
        validate_episode(ep)
        act, state = np.asarray(want["action"]), np.asarray(want["observation.state"])
        # degrees -> radians into the first 5 joint values, gripper 0..100 -> 0..1
        np.testing.assert_allclose(_slot(ACTION, "arm.joint_pos", ep.action)[:, :5], np.deg2rad(act[:, :5]),
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(_slot(ACTION, "arm.gripper", ep.action)[:, 0], act[:, 5] / 100, atol=1e-6)
        np.testing.assert_allclose(_slot(STATE, "arm.joint_pos", ep.state)[:, :5], np.deg2rad(state[:, :5]),
                                   atol=1e-6)
        mask = ep.action_mask
        assert mask.sum() == 6 and not mask[ACTION.range("arm.joint_pos")[0] + 5]  # 6th/7th joint masked out
        np.testing.assert_array_equal(ep.action_raw, act.astype(np.float32))  # the source values, verbatim
        assert ep.instruction == want["tasks"][0]
        assert ep.length == want["length"] and ep.timestamp_ns[1] == round(1e9 / 30)
        for role, key in info.cameras.items():
            assert all(b[:8] == b"\x89PNG\r\n\x1a\n" for b in ep.images[role])  # LeRobot's PNGs, not re-encoded
            got = lr.means(decode_rgb(b, role) for b in ep.images[role])
            np.testing.assert_allclose(got, want["frame_means"][key], atol=1e-9)
    assert [e.extra["lerobot_episode_index"] for e in eps] == [0, 1, 2]
    assert eps[1].instruction == "put the cube in the bowl"


def test_aloha_v3_video_decodes_each_episode_at_its_from_timestamp(lr):
    conv, eps, rej = lr.convert(lr.fixture(ALOHA))
    exp = lr.expected(ALOHA)
    assert not rej and [e.length for e in eps] == [10, 10]
    assert conv.datasets()[0].cameras == {"primary": "observation.images.top"}
    for ep, want in zip(eps, exp["episodes"]):
        validate_episode(ep)
        act = np.asarray(want["action"])
        np.testing.assert_allclose(_slot(ACTION, "left_arm.joint_pos", ep.action)[:, :6], act[:, :6], atol=1e-6)
        np.testing.assert_allclose(_slot(ACTION, "right_arm.joint_pos", ep.action)[:, :6], act[:, 7:13], atol=1e-6)
        np.testing.assert_allclose(_slot(ACTION, "right_arm.gripper", ep.action)[:, 0], act[:, 13], atol=1e-6)
        got = lr.means(decode_rgb(b, "top") for b in ep.images["primary"])
        # lossy AV1 then JPEG: each frame's mean stays within a level or two of what LeRobot was given, and the
        # frames of the other episode (another colour and square) are far off
        np.testing.assert_allclose(got, want["frame_means"]["observation.images.top"], atol=2.5)
    other = lr.means(decode_rgb(b, "top") for b in eps[1].images["primary"])
    assert np.abs(other - exp["episodes"][0]["frame_means"]["observation.images.top"]).mean() > 5


def test_video_frames_can_be_stored_as_mp4_clips(lr):
    _, eps, rej = lr.convert(lr.fixture(ALOHA), storage="mp4")
    assert not rej
    clip = eps[0].videos["primary"]
    assert "primary" not in eps[0].images and clip.data[4:8] == b"ftyp" and len(clip.frame_index) == 10


def test_unknown_robot_is_raw_with_the_generic_embodiment_and_a_warning(lr):
    conv, eps, rej = lr.convert(lr.fixture("custom_arm"))
    exp = lr.expected("custom_arm")
    assert not rej and len(eps) == 2
    assert any("my_custom_arm" in w and "raw" in w for w in conv.warnings())
    assert conv.datasets()[0].embodiment == "generic"
    for ep, want in zip(eps, exp["episodes"]):
        validate_episode(ep)
        np.testing.assert_array_equal(ep.action_raw, np.asarray(want["action"], np.float32))
        assert not ep.action_mask.any() and ep.state_raw.shape == (4, 0)
    assert conv.datasets()[0].action_raw_keys == ["action[a]", "action[b]", "action[c]"]


def test_a_spec_maps_by_name_so_reordered_motors_give_the_same_slots(lr, tmp_path):
    """Permute the motors (data columns and names together): the normalized actions must not change."""
    src = lr.copy_fixture(SO100, tmp_path)
    perm = [5, 2, 0, 4, 1, 3]
    info = json.loads((src / "meta/info.json").read_text())
    for key in ("action", "observation.state"):
        info["features"][key]["names"] = [info["features"][key]["names"][i] for i in perm]
    (src / "meta/info.json").write_text(json.dumps(info))

    def permute(t: pa.Table) -> pa.Table:
        for key in ("action", "observation.state"):
            vals = np.asarray(t[key].to_pylist(), np.float32)[:, perm]
            arr = pa.FixedSizeListArray.from_arrays(pa.array(vals.reshape(-1)), 6)
            t = t.set_column(t.column_names.index(key), key, arr)
        return t

    lr.edit_data(src, permute)
    _, base, _ = lr.convert(lr.fixture(SO100))
    _, moved, rej = lr.convert(src)
    assert not rej
    for a, b in zip(base, moved):
        np.testing.assert_array_equal(a.action, b.action)
        np.testing.assert_array_equal(a.state, b.state)
        assert not np.array_equal(a.action_raw, b.action_raw)  # the raw columns keep the source's order


def test_v21_layout_gives_the_same_episodes(lr, tmp_path):
    _, v3, _ = lr.convert(lr.fixture(SO100))
    conv, v21, rej = lr.convert(lr.to_v21(lr.fixture(SO100), tmp_path / "so100_v21"))
    assert not rej and conv.meta.version == "v2.1" and len(conv.work_units(1 << 30)) == 3  # one file per episode
    for a, b in zip(v3, v21):
        np.testing.assert_array_equal(a.action, b.action)
        np.testing.assert_array_equal(a.state, b.state)
        assert a.images["primary"] == b.images["primary"] and a.instruction == b.instruction


def test_v21_videos_one_file_per_episode(lr, tmp_path):
    exp = lr.expected(ALOHA)
    conv, eps, rej = lr.convert(lr.to_v21(lr.fixture(ALOHA), tmp_path / "aloha_v21"))
    assert not rej and len(eps) == 2
    for ep, want in zip(eps, exp["episodes"]):
        got = lr.means(decode_rgb(b, "top") for b in ep.images["primary"])
        np.testing.assert_allclose(got, want["frame_means"]["observation.images.top"], atol=3.0)


def test_sniff_and_hub_snapshot_name(lr, tmp_path):
    assert sniff_converter(str(lr.fixture(SO100))) == "lerobot"
    snap = tmp_path / "datasets--lerobot--so100_pick" / "snapshots" / "abc123"
    snap.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(lr.fixture(SO100), snap)
    conv, _, _ = lr.convert(snap)
    assert conv.datasets()[0].name == "so100_pick"


# -- bad input ------------------------------------------------------------------------------------
def test_missing_or_malformed_metadata_is_one_line(lr, tmp_path):
    src = lr.copy_fixture(SO100, tmp_path)
    (src / "meta/tasks.parquet").unlink()
    with pytest.raises(InputError, match="missing meta/tasks.parquet"):
        lr.convert(src)
    (src / "meta/info.json").unlink()
    with pytest.raises(InputError, match="missing meta/info.json"):
        lr.convert(src)
    src2 = lr.copy_fixture(ALOHA, tmp_path)
    info = json.loads((src2 / "meta/info.json").read_text())
    info["data_path"] = "../../etc/{episode_index}.parquet"
    (src2 / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match="not a path inside the dataset"):
        lr.convert(src2)


def _codes(rej):
    return {r.episode_key.rsplit("_", 1)[1]: r.code for r in rej}


def test_episodes_disagreeing_with_the_data_are_quarantined_by_name(lr, tmp_path):
    src = lr.copy_fixture(SO100, tmp_path)

    def bad_meta(rows):
        rows[0]["length"] += 1  # the listing claims a frame the data lacks
        rows[2]["dataset_from_index"] += 1  # a range that is one frame short

    lr.edit_episodes(src, bad_meta)
    _, eps, rej = lr.convert(src)
    assert [e.extra["lerobot_episode_index"] for e in eps] == [1]
    assert _codes(rej) == {"000000": "episode_length_mismatch", "000002": "episode_length_mismatch"}
    assert [r.steps for r in rej] == [7, 6]


def test_index_and_timestamp_disagreements(lr, tmp_path):
    src = lr.copy_fixture(SO100, tmp_path)

    def bad_rows(t: pa.Table) -> pa.Table:
        ts = t["timestamp"].to_numpy().copy()
        idx = t["index"].to_numpy().copy()
        ep = t["episode_index"].to_numpy()
        ts[np.nonzero(ep == 0)[0][3]] += 0.01  # 10 ms off the frame clock
        idx[ep == 2] += 100  # the rows' global index does not match the listed range
        t = t.set_column(t.column_names.index("timestamp"), "timestamp", pa.array(ts))
        return t.set_column(t.column_names.index("index"), "index", pa.array(idx))

    lr.edit_data(src, bad_rows)
    _, eps, rej = lr.convert(src)
    assert len(eps) == 1 and _codes(rej) == {"000000": "timestamp_mismatch", "000002": "index_mismatch"}
    assert "frame 3" in next(r.reason for r in rej if r.code == "timestamp_mismatch")


def test_short_and_missing_videos(lr, tmp_path):
    src = lr.copy_fixture(ALOHA, tmp_path)

    def past_the_end(rows):
        key = "videos/observation.images.top"
        rows[1][f"{key}/from_timestamp"] += 0.1  # the second episode now runs 5 frames past the video's end
        rows[1][f"{key}/to_timestamp"] += 0.1

    lr.edit_episodes(src, past_the_end)
    _, eps, rej = lr.convert(src)
    assert len(eps) == 1 and _codes(rej) == {"000001": "short_video"}
    assert "step 5 of 10" in rej[0].reason
    next((src / "videos").rglob("*.mp4")).unlink()
    _, eps, rej = lr.convert(src)
    assert not eps and set(_codes(rej).values()) == {"missing_video"}


def test_missing_data_file_and_ledger_balance_through_ingest(lr, tmp_path):
    src = lr.copy_fixture(SO100, tmp_path)
    lr.edit_episodes(src, lambda rows: rows[1].update(length=rows[1]["length"] - 2))
    res = run_ingest(IngestConfig("lerobot", str(src), str(tmp_path / "out"), executor="local"))
    led = res.ledger
    assert (led["episodes_in"], led["episodes_out"], led["episodes_quarantined"]) == (3, 2, 1)
    assert led["balanced"] and led["by_reason"] == {"episode_length_mismatch": 1}
    problems, stats = validate_output(str(tmp_path / "out"))
    assert problems == [] and stats["episodes"] == 2
    next((src / "data").rglob("*.parquet")).unlink()
    _, eps, rej = lr.convert(src)
    assert not eps and {r.code for r in rej} == {"missing_data"}


def test_spec_options(lr, tmp_path):
    with pytest.raises(InputError, match="robot_spec=aloha"):
        lr.convert(lr.fixture(SO100), robot_spec="aloha")
    # a user's --spec overrides the shipped one (here: the gripper kept in 0..100, no scaling)
    from vlaflow.converters.lerobot.converter import LeRobotConverter
    from vlaflow.converters.standardize import load_spec_file

    spec = tmp_path / "mine.yaml"
    spec.write_text("dataset: mine\nembodiment: so100_follower\naction:\n"
                    "  - {slot: arm.gripper, key: 'action[gripper.pos]'}\n")
    conv = LeRobotConverter(str(lr.fixture(SO100)), ConverterOptions(spec_file=str(spec)))
    ep = next(i for u in conv.work_units(1 << 30) for i in conv.read(u))
    exp = lr.expected(SO100)["episodes"][0]
    np.testing.assert_allclose(_slot(ACTION, "arm.gripper", ep.action)[:, 0], np.asarray(exp["action"])[:, 5],
                               atol=1e-5)
    assert load_spec_file(spec)["dataset"] == "mine"


def test_rows_of_an_episode_the_metadata_does_not_list(lr, tmp_path):
    src = lr.copy_fixture(SO100, tmp_path)
    lr.edit_episodes(src, lambda rows: rows.pop(2))  # the data keeps episode 2's rows, the listing drops it
    conv, eps, rej = lr.convert(src)
    assert len(eps) == 2 and _codes(rej) == {"000002": "unlisted_episode"} and rej[0].steps == 6
    units = conv.work_units(1)  # one unit per episode: only the file's last one reports the orphan rows
    items = [i for u in units for i in conv.read(u)]
    assert len(units) == 2 and [getattr(i, "code", None) for i in items] == [None, None, "unlisted_episode"]
