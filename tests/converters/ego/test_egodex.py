"""egodex: generated EgoDex-style HDF5 + MP4 pairs with known camera-frame poses (built in the camera frame,
stored in a random ARKit world frame) → camera-frame targets, projections, masks, frame-accurate frames."""
import io

import numpy as np
import pytest
from PIL import Image

from vlaflow.converters.base import ConverterOptions, Rejected
from vlaflow.converters.ego import EgoDexConverter
from vlaflow.converters.ego.egodex_synth import EGODEX_JOINTS, FINGERTIPS, frame_from_level, write_egodex_episode
from vlaflow.schemas import ACTION, STATE, TRAJECTORY, InputError, validate_episode
from vlaflow.schemas.rotations import rotvec_to_matrix

FLIP = np.diag([1.0, -1.0, -1.0])


def convert(root, **opts):
    conv = EgoDexConverter(str(root), ConverterOptions(extra=opts))
    return conv, [it for u in conv.work_units(1 << 26) for it in conv.read(u)]


def slot(ep_array, layout, name):
    a, b = layout.range(name)
    return ep_array[..., a:b]


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    root = tmp_path_factory.mktemp("egodex")
    gt = write_egodex_episode(root / "part1" / "fold_towel", 0, seed=3,
                              occlude=("leftIndexFingerTip", range(6, 13)))
    conv, (ep,) = convert(root, horizon="4")
    return root, gt, conv, ep


def test_layout_and_instruction_rules(tmp_path):
    import h5py

    t = write_egodex_episode(tmp_path / "a", 0, llm_type="reversible", which=1)
    assert t["instruction"] == "fold towel with both hands"
    with h5py.File(tmp_path / "a" / "0.hdf5") as f:
        assert len(EGODEX_JOINTS) == 68 and set(f["transforms"]) == set(EGODEX_JOINTS) | {"camera"}
        assert f["transforms/leftHand"].shape == (45, 4, 4) and f["camera/intrinsic"].shape == (3, 3)
    write_egodex_episode(tmp_path / "a", 1, llm_type="reversible", which=2)
    write_egodex_episode(tmp_path / "a", 2, llm_type="single", which=2)
    write_egodex_episode(tmp_path / "a", 3, old_style=True)
    assert EgoDexConverter.sniff(str(tmp_path / "a"))
    _, items = convert(tmp_path / "a")
    assert [ep.instruction for ep in items] == ["fold towel with both hands", "undo: fold towel",
                                                "fold towel with both hands", "fold towel with both hands"]
    assert items[0].instructions == ["fold towel with both hands", "undo: fold towel"]


def test_frames_are_the_sampled_video_frames(moving):
    _, _, _, ep = moving
    validate_episode(ep, verify_images=True)
    assert ep.extra["video_frames"] == list(range(0, 45, 3)) and ep.length == 15  # 30 fps video, 10 Hz
    assert ep.timestamp_ns.tolist() == [f * 1_000_000_000 // 30 for f in range(0, 45, 3)]
    shown = [frame_from_level(np.asarray(Image.open(io.BytesIO(b))).mean()) for b in ep.images["primary"]]
    assert shown == ep.extra["video_frames"]
    assert ep.embodiment == "human_hands" and "OpenCV" in ep.embodiment_prompt and "metres" in ep.embodiment_prompt


def test_state_is_the_construction_truth(moving):
    """The generator built wrists in the camera frame and stored them in an ARKit world frame: the converter
    must land exactly on the construction values (no shared code: the test only indexes the truth)."""
    _, gt, _, ep = moving
    f = ep.extra["video_frames"]
    for side in ("left", "right"):
        assert np.allclose(slot(ep.state, STATE, f"{side}_hand.wrist_pos"), gt["cam_wrist_pos"][side][f], atol=2e-5)
    assert slot(ep.state_mask, STATE, "left_hand.wrist_pos").all()


def test_future_targets_in_the_current_camera(moving):
    _, gt, _, ep = moving
    f = ep.extra["video_frames"]
    K, cam = gt["intrinsic"], gt["camera_world"]
    for t in (0, 5, 10):
        cv_from_world = np.eye(4)
        cv_from_world[:3, :3] = FLIP
        cv_from_world = cv_from_world @ np.linalg.inv(cam[f[t]])
        for k in range(4):
            if t + 1 + k >= len(f):
                assert not ep.trajectory_mask[t, k].any()
                continue
            fut = f[t + 1 + k]
            p = cv_from_world @ gt["world_joints"]["rightHand"][fut][:, 3]
            assert np.allclose(slot(ep.trajectory[t, k], TRAJECTORY, "right_hand.wrist_pos"), p[:3], atol=3e-5)
            u = K[0, 0] * p[0] / p[2] + K[0, 2]
            v = K[1, 1] * p[1] / p[2] + K[1, 2]
            assert np.allclose(slot(ep.trajectory[t, k], TRAJECTORY, "right_hand.wrist_uv"),
                               [u / gt["width"], v / gt["height"]], atol=1e-4)
            tips = slot(ep.trajectory[t, k], TRAJECTORY, "right_hand.fingertips").reshape(5, 3)
            want = [(cv_from_world @ gt["world_joints"][f"right{n}"][fut][:, 3])[:3] for n in FINGERTIPS]
            assert np.allclose(tips, want, atol=3e-5)
    assert not ep.trajectory_mask[:, 4:].any()  # --opt horizon=4
    # action = the first future step; invalid (and masked) on the last row
    assert np.array_equal(slot(ep.action, ACTION, "right_hand.wrist_pos")[:-1],
                          slot(ep.trajectory[:, 0], TRAJECTORY, "right_hand.wrist_pos")[:-1])
    assert not ep.action_valid[-1] and not ep.action_mask[-1].any() and ep.action_valid[:-1].all()


def test_occluded_fingertip_is_masked_not_zeroed(moving):
    _, _, _, ep = moving
    tips = slot(ep.trajectory_mask, TRAJECTORY, "left_hand.fingertips").reshape(15, 16, 5, 3)
    f = np.array(ep.extra["video_frames"])
    # sample s + 1 + k sees frame f[s+1+k]; the index fingertip has confidence 0 on frames 6..12
    for s in range(15):
        for k in range(4):
            j = s + 1 + k
            if j < 15:
                assert tips[s, k, 1].all() == (not 6 <= f[j] <= 12), (s, k)
                assert tips[s, k, [0, 2, 3, 4]].all()
    assert np.all(ep.trajectory[~ep.trajectory_mask] == 0)


def test_static_camera_rotation_and_principal_point(tmp_path):
    gt = write_egodex_episode(tmp_path / "s", 0, static_camera=True, plant={"right": (3, (0.0, 0.0, 1.0)),
                                                                            "left": (6, (-1.0, 0.0, 0.5))})
    _, (ep,) = convert(tmp_path / "s", horizon="2")
    validate_episode(ep)
    # row 0's first future sample is frame 3, where the right wrist is 1 m straight ahead
    assert np.allclose(slot(ep.trajectory[0, 0], TRAJECTORY, "right_hand.wrist_uv"), [0.5, 0.5], atol=1e-5)
    assert np.allclose(slot(ep.trajectory[0, 0], TRAJECTORY, "right_hand.wrist_pos"), [0, 0, 1], atol=1e-5)
    # left wrist on frame 6 is far left of the image: 3D kept, projection masked
    assert slot(ep.trajectory_mask[1, 0], TRAJECTORY, "left_hand.wrist_pos").all()
    assert not slot(ep.trajectory_mask[1, 0], TRAJECTORY, "left_hand.wrist_uv").any()
    # with a still camera the wrist rotation is the construction rotation itself
    f = ep.extra["video_frames"]
    for t in range(len(f) - 1):
        got = rotvec_to_matrix(slot(ep.action[t], ACTION, "left_hand.wrist_rot").astype(np.float64))
        assert np.allclose(got, gt["cam_wrist_rot"]["left"][f[t + 1]], atol=2e-5)


def test_bad_episodes(tmp_path):
    root = tmp_path / "bad"
    write_egodex_episode(root, 0, pose_frames=43)  # 2 short: aligned with a warning
    write_egodex_episode(root, 1, pose_frames=30)  # 15 short: quarantined
    write_egodex_episode(root, 2, drop_intrinsic=True)
    write_egodex_episode(root, 3, nan_at=("camera", 9))
    write_egodex_episode(root, 4, nan_at=("rightHand", 9))  # a hand NaN is masked, the episode kept
    write_egodex_episode(root, 5, truncate_video=True)
    write_egodex_episode(root, 6, write_mp4=False)
    (root / "7.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    conv, items = convert(root)
    got = {(it.episode_key if isinstance(it, Rejected) else it.episode_id).rsplit("/", 1)[-1]:
           (it.code if isinstance(it, Rejected) else "ok") for it in items}
    assert got == {"0": "ok", "1": "pose_frame_mismatch", "2": "missing_intrinsics", "3": "non_finite_value",
                   "4": "ok", "5": "undecodable_video", "6": "missing_frames", "7": "unreadable_file"}
    assert any("43 pose frames vs 45 video frames" in w for w in conv.warnings())
    ep4 = items[4]
    validate_episode(ep4)
    m = slot(ep4.trajectory_mask, TRAJECTORY, "right_hand.wrist_pos")
    assert not m[2, 0].any() and m[1, 0].all()  # frame 9 = sample 3 = row 2's first future step


def test_file_uri_reads_the_same_episodes_as_the_path(tmp_path):
    import dataclasses

    root = tmp_path / "ego"
    for i in range(2):
        write_egodex_episode(root / "part1" / "fold_towel", i, seed=i)
    assert EgoDexConverter.sniff(root.as_uri())
    _, by_path = convert(root)
    _, by_uri = convert(root.as_uri())
    assert root.as_uri().startswith("file:///") and len(by_path) == len(by_uri) == 2
    for a, b in zip(by_path, by_uri):
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y, err_msg=f.name)
            else:
                assert x == y, f.name
    with pytest.raises(InputError, match="reads local files"):
        EgoDexConverter("memory://bucket/ego")  # another scheme: still one clear line


def test_mp4_storage_and_decord(tmp_path):
    write_egodex_episode(tmp_path / "v", 0)
    _, (ep,) = convert(tmp_path / "v", storage="mp4", decoder="decord", gop="5")
    validate_episode(ep)
    assert not ep.images and ep.videos["primary"].frame_index.tolist() == list(range(15))
    import av

    with av.open(io.BytesIO(ep.videos["primary"].data)) as c:
        shown = [frame_from_level(fr.to_ndarray(format="rgb24").mean()) for fr in c.decode(video=0)]
    assert shown == ep.extra["video_frames"]


@pytest.mark.slow
def test_ingest_end_to_end(tmp_path):
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest
    from vlaflow.pipelines.validate import validate_output

    for i in range(3):
        write_egodex_episode(tmp_path / "src" / "part1" / "fold_towel", i, seed=i)
    write_egodex_episode(tmp_path / "src" / "test" / "fold_towel", 0, drop_intrinsic=True)
    res = run_ingest(IngestConfig("egodex", str(tmp_path / "src"), str(tmp_path / "out"),
                                  ConverterOptions(extra={"storage": "mp4"}), executor="local"))
    led = res.ledger
    assert led["balanced"] and led["episodes_out"] == 3 and led["by_reason"] == {"missing_intrinsics": 1}
    problems, stats = validate_output(str(tmp_path / "out"))
    assert problems == [] and stats["rows"] == 45
    info = res.manifest["datasets"]["egodex"]
    assert info["trajectory"]["frame"] == "camera_opencv_current_row" and info["embodiment"] == "human_hands"
