"""video_trajectory: a user's video + point-track file (JSON and Parquet) → frames with trajectory targets."""
import json
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlaflow.converters.base import ConverterOptions, Rejected
from vlaflow.converters.ego import VideoTrajectoryConverter
from vlaflow.media import ClipEncoder
from vlaflow.schemas import TRAJECTORY, Episode, validate_episode

W, H, FPS, N = 160, 120, 30, 45
K = [[100.0, 0, 80], [0, 100.0, 60], [0, 0, 1]]


def write_video(path, n=N, fps=FPS):
    enc = ClipEncoder(Fraction(fps), "h264", gop=15)
    for i in range(n):
        enc.add(np.full((H, W, 3), (i * 5) % 250, np.uint8))
    path.write_bytes(enc.finish())


def convert(path, **opts):
    conv = VideoTrajectoryConverter(str(path), ConverterOptions(extra=opts))
    return conv, [it for u in conv.work_units(1 << 26) for it in conv.read(u)]


def test_pixel_tracks_json(tmp_path):
    write_video(tmp_path / "clip.mp4")
    # a cup moving right 2 px per frame; the left wrist seen only on even frames
    cup = [[10 + 2 * i, 60] for i in range(N)]
    wrist = [[80, 100] if i % 2 == 0 else None for i in range(N)]
    (tmp_path / "clip.json").write_text(json.dumps({"instruction": "push the cup", "space": "pixel",
                                                    "points": {"cup": cup, "left_wrist": wrist}}))
    from vlaflow.converters import sniff

    assert VideoTrajectoryConverter.sniff(str(tmp_path)) and sniff(str(tmp_path)) == "video_trajectory"
    conv, (ep,) = convert(tmp_path, rate_hz="10", horizon="4")
    assert isinstance(ep, Episode), ep
    validate_episode(ep)
    assert ep.length == 15 and ep.extra["video_frames"] == list(range(0, N, 3)) and ep.instruction == "push the cup"
    assert ep.timestamp_ns.tolist() == [i * 100_000_000 for i in range(15)]
    a, _ = TRAJECTORY.range("points.uv")
    # row 0, horizon k → sample k+1 = video frame 3(k+1): cup at x = 10 + 6(k+1)
    assert np.allclose(ep.trajectory[0, :4, a], [(10 + 6 * (k + 1)) / W for k in range(4)])
    assert np.allclose(ep.trajectory[0, :4, a + 1], 0.5) and ep.trajectory_mask[0, :4, a].all()
    assert not ep.trajectory_mask[:, 4:].any() and not ep.trajectory_mask[14].any()  # horizon 4; last row no future
    w, _ = TRAJECTORY.range("left_hand.wrist_uv")
    # sample s is frame 3s: even frames when s is even, so the wrist is masked on odd samples
    assert ep.trajectory_mask[0, :4, w].tolist() == [False, True, False, True]
    assert np.all(ep.trajectory[~ep.trajectory_mask] == 0)
    x, _ = TRAJECTORY.range("points.xyz")
    assert not ep.trajectory_mask[..., x].any()  # pixel tracks fill only image slots
    assert ep.extra["points"] == ["cup"] and conv.datasets()[0].trajectory["horizon"] == 4


def test_camera_tracks_parquet_with_moving_camera(tmp_path):
    """3D points in a world frame + per-frame camera poses: targets in the current camera, projected."""
    write_video(tmp_path / "rig.mp4")
    rows = []
    for i in range(N):
        rows.append({"frame_index": i, "point": "tool", "x": 0.0, "y": 0.0, "z": 2.0, "confidence": 1.0})
    t = pa.Table.from_pylist(rows)
    poses = np.repeat(np.eye(4)[None], N, 0)
    poses[:, 0, 3] = 0.01 * np.arange(N)  # camera slides +x 1 cm per frame (OpenCV convention)
    meta = {"space": "world", "intrinsics": K, "camera_to_world": poses.tolist(), "camera_convention": "opencv",
            "instruction": "track the tool"}
    t = t.replace_schema_metadata({"vlaflow_trajectory": json.dumps(meta)})
    pq.write_table(t, tmp_path / "rig.parquet")
    _, (ep,) = convert(tmp_path, rate_hz="10", horizon="2")
    assert isinstance(ep, Episode), ep
    validate_episode(ep)
    a, _ = TRAJECTORY.range("points.xyz")
    u, _ = TRAJECTORY.range("points.uv")
    # row 1 = frame 3, camera at x = 0.03; the static tool stays at camera x = -0.03 for every future step
    assert np.allclose(ep.trajectory[1, :2, a:a + 3], [[-0.03, 0, 2.0]] * 2, atol=1e-6)
    assert np.allclose(ep.trajectory[1, 0, u:u + 2], [(80 - 100 * 0.03 / 2) / W, 0.5], atol=1e-6)


def test_bad_tracks_are_quarantined(tmp_path):
    write_video(tmp_path / "a.mp4")
    (tmp_path / "a.json").write_text(json.dumps({"points": {"cup": [[1, 2]] * (N + 5)},
                                                 "frame_index": list(range(N + 5))}))
    write_video(tmp_path / "b.mp4")
    (tmp_path / "b.json").write_text(json.dumps({"points": {"cup": [[1, 2, 3]] * N}, "space": "pixel"}))
    (tmp_path / "c.json").write_text(json.dumps({"points": {"cup": [[1, 2]]}, "video": "../etc/x.mp4"}))
    (tmp_path / "d.json").write_text(json.dumps({"points": {"cup": [[1, 2]]}}))  # no d.mp4
    write_video(tmp_path / "e.mp4")
    (tmp_path / "e.json").write_text(json.dumps({"points": {"cup": [[0, 0, 1]] * N}, "space": "world"}))
    (tmp_path / "f.mp4").write_bytes((tmp_path / "a.mp4").read_bytes()[:300])  # truncated video
    (tmp_path / "f.json").write_text(json.dumps({"points": {"cup": [[1, 2]] * N}}))
    _, items = convert(tmp_path)
    codes = {it.episode_key.split("/")[-1]: it.code for it in items if isinstance(it, Rejected)}
    assert codes == {"a": "missing_frames", "b": "feature_mismatch", "c": "unsafe_path", "d": "missing_frames",
                     "e": "feature_mismatch", "f": "undecodable_video"}


def test_options_are_checked(tmp_path):
    write_video(tmp_path / "clip.mp4")
    (tmp_path / "clip.json").write_text(json.dumps({"points": {"cup": [[1, 2]] * N}}))
    from vlaflow.schemas import InputError

    for bad in ({"horizon": "99"}, {"decoder": "opencv"}, {"storage": "gif"}, {"rate_hz": "0"}):
        with pytest.raises(InputError):
            convert(tmp_path, **bad)


def test_storage_png_keeps_the_decoded_samples_exactly(tmp_path):
    """The shared storage option reaches video converters: png frames are the decoded samples, bit for bit."""
    from vlaflow.media import PyAVDecoder, decode_rgb, probe

    write_video(tmp_path / "clip.mp4")
    (tmp_path / "clip.json").write_text(json.dumps({"points": {"cup": [[1, 2]] * N}}))
    _, (ep,) = convert(tmp_path, storage="png")
    (_, (jpeg_ep,)) = convert(tmp_path)
    frames = ep.images["primary"]
    assert all(f[:4] == b"\x89PNG" for f in frames) and all(f[:2] == b"\xff\xd8" for f in jpeg_ep.images["primary"])
    picks = ep.extra["video_frames"]
    decoded = dict(PyAVDecoder(str(tmp_path / "clip.mp4"), probe(str(tmp_path / "clip.mp4"))).frames(picks))
    assert all(np.array_equal(decode_rgb(f, "png"), decoded[i]) for f, i in zip(frames, picks))


def test_camera_space_points_follow_the_camera_and_unposed_rows_are_masked(tmp_path):
    """Points given in each frame's own camera + camera poses: targets re-expressed in the current camera."""
    write_video(tmp_path / "cam.mp4")
    poses = np.repeat(np.eye(4)[None], N, 0)
    poses[:, 0, 3] = 0.01 * np.arange(N)  # the camera slides +x; a static world point at x = 0, z = 2
    pts = [[-0.01 * i, 0.0, 2.0] for i in range(N)]  # ... seen in each frame's own camera
    fidx = [i for i in range(N) if i != 6]  # frame 6 (sample 2) has no entry, hence no pose
    (tmp_path / "cam.json").write_text(json.dumps({
        "space": "camera", "intrinsics": K, "frame_index": fidx,
        "camera_to_world": [poses[i].tolist() for i in fidx], "points": {"tool": [pts[i] for i in fidx]}}))
    _, (ep,) = convert(tmp_path, rate_hz="10", horizon="3")
    assert isinstance(ep, Episode), ep
    validate_episode(ep)
    a, _ = TRAJECTORY.range("points.xyz")
    m = ep.trajectory_mask[..., a]
    # row 5 = frame 15 (camera at 0.15): the static point stays at camera x = -0.15 for every future step
    assert np.allclose(ep.trajectory[5, :3, a:a + 3], [[-0.15, 0, 2.0]] * 3, atol=1e-6) and m[5, :3].all()
    assert not m[2].any()  # no camera pose for row 2: nothing to express targets in
    assert not m[0, 1] and m[0, 0] and m[0, 2]  # sample 2 has no observation


def test_malformed_track_files_are_quarantined_not_fatal(tmp_path):
    bad = {
        "short_conf": {"points": {"cup": [[1, 2]] * N}, "confidence": {"cup": [1.0] * 3}},
        "str_frames": {"points": {"cup": [[1, 2]]}, "frame_index": ["x"]},
        "scalar": {"points": {"cup": [5] * N}},
        "ragged_k": {"points": {"cup": [[0, 0, 1]] * N}, "space": "camera", "intrinsics": [[1, 0], [0, 1, 0]]},
    }
    for name, doc in bad.items():
        write_video(tmp_path / f"{name}.mp4")
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    write_video(tmp_path / "pq.mp4")
    t = pa.table({"frame_index": [0], "point": ["cup"], "x": [1.0], "y": [2.0]})
    pq.write_table(t.replace_schema_metadata({"vlaflow_trajectory": "{not json"}), tmp_path / "pq.parquet")
    # a valid file whose "video" names another clip and whose first 64 KiB hold no "points"
    write_video(tmp_path / "other_name.mp4")
    big = {"camera_to_world": [np.eye(4).tolist()] * N, "space": "world", "video": "other_name.mp4",
           "points": {"cup": [[0, 0, 1.0]] * N}}
    (tmp_path / "zz_long.json").write_text(json.dumps(big, indent=4) + " " * 70000)
    _, items = convert(tmp_path)
    got = {(it.episode_key if isinstance(it, Rejected) else it.episode_id).split("/")[-1]:
           (it.code if isinstance(it, Rejected) else "ok") for it in items}
    assert got == {"short_conf": "feature_mismatch", "str_frames": "feature_mismatch", "scalar": "feature_mismatch",
                   "ragged_k": "feature_mismatch", "pq": "feature_mismatch", "zz_long": "ok"}
