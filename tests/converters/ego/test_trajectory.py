"""Camera-frame transforms, projections and masks of converters/ego/trajectory.py on hand-built scenes."""
import numpy as np
import pytest
from vlaflow.converters.ego.trajectory import (
    Observations,
    build_chunks,
    cv_camera_from_world,
    pad_horizon,
    project,
)
from vlaflow.schemas import TRAJ_HORIZON, TRAJECTORY
from vlaflow.schemas.rotations import matrix_to_rotvec, rotvec_to_matrix

K = np.array([[100.0, 0, 80], [0, 100.0, 60], [0, 0, 1]])
W, H = 160, 120


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def test_point_ahead_projects_to_principal_point_and_masks_outside():
    uv, ok = project(np.array([[0, 0, 1.0], [0, 0, -1.0], [10.0, 0, 1.0], [0.3, -0.2, 2.0]]), K, W, H)
    assert np.allclose(uv[0], [80 / W, 60 / H]) and ok[0]
    assert not ok[1] and not ok[2]  # behind the camera; far right of the image
    assert np.allclose(uv[3], [(80 + 100 * 0.15) / W, (60 - 100 * 0.1) / H]) and ok[3]


def test_arkit_camera_pose_maps_to_opencv_axes():
    # ARKit camera at (1, 2, 3) in the world, turned 90° left about +y: it looks along world -x.
    pose = np.eye(4)
    pose[:3, :3] = _rot_y(np.pi / 2)
    pose[:3, 3] = [1, 2, 3]
    cfw = cv_camera_from_world(pose[None], "arkit")[0]
    ahead = cfw @ np.array([1 - 2.0, 2, 3, 1])  # 2 m along world -x = straight ahead
    above = cfw @ np.array([1, 2 + 0.5, 3, 1])  # 0.5 m up (ARKit y up) = OpenCV -y
    assert np.allclose(ahead[:3], [0, 0, 2]) and np.allclose(above[:3], [0, -0.5, 0])


def test_future_positions_are_in_the_current_camera_frame_with_masks():
    # Static world point at (0, 0, -2) (ARKit: 2 m ahead of the origin); the camera slides +x by 0.1 m per sample.
    s = 5
    poses = np.repeat(np.eye(4)[None], s, 0)
    poses[:, 0, 3] = 0.1 * np.arange(s)
    obs = Observations(positions={"right_hand.wrist_pos": np.tile([0, 0, -2.0], (s, 1))[:, None]},
                       position_valid={"right_hand.wrist_pos": np.array([[1], [1], [0], [1], [1]], bool)})
    vals, mask = build_chunks(obs, cv_camera_from_world(poses), K, (W, H), horizon=3)
    a, b = TRAJECTORY.range("right_hand.wrist_pos")
    ua, ub = TRAJECTORY.range("right_hand.wrist_uv")
    # Row 0 sees the point at x = 0 at every offset: the *current* camera frame, not the future camera's.
    assert np.allclose(vals[0, [0, 1, 3], a:b], [[0, 0, 2]] * 3)
    assert np.allclose(vals[1, 0, a:b], [-0.1, 0, 2])
    assert mask[0, 0, a] and mask[0, 1, a] and not mask[0, 2, a] and mask[0, 3, a]  # sample 2 is low-confidence
    assert not mask[3, 2:, a].any() and not mask[4, 1:, a].any()  # past the episode end
    assert np.all(vals[~mask] == 0)
    assert np.allclose(vals[1, 0, ua:ub], [(80 - 100 * 0.05) / W, 0.5]) and mask[1, 0, ua]
    traj, tmask = pad_horizon(vals, mask)
    assert traj.shape == (s, TRAJ_HORIZON, TRAJECTORY.width) and not tmask[:, 3:].any()
    assert np.array_equal(traj[:, :3], vals[:, 1:])


def test_rotations_are_relative_to_the_current_camera():
    s = 3
    poses = np.repeat(np.eye(4)[None], s, 0)
    poses[1, :3, :3] = _rot_y(0.3)
    joint = np.repeat(_rot_y(0.5)[None], s, 0)
    obs = Observations(rotations={"left_hand.wrist_rot": joint}, rotation_valid={"left_hand.wrist_rot": np.ones(s, bool)})
    vals, mask = build_chunks(obs, cv_camera_from_world(poses), None, None, horizon=1)
    a, b = TRAJECTORY.range("left_hand.wrist_rot")
    gl = np.diag([1.0, -1, -1])
    expect = gl @ _rot_y(-0.3) @ _rot_y(0.5)  # camera 1 from world, then the joint
    assert np.allclose(rotvec_to_matrix(vals[1, 0, a:b].astype(np.float64)), expect, atol=1e-6)
    assert np.allclose(matrix_to_rotvec(expect), vals[1, 0, a:b], atol=1e-6)
    assert mask[0, 1, a] and not mask[2, 1, a]


def test_nan_pose_is_masked_not_zero_filled():
    s = 3
    pos = np.array([[[0, 0, 1.0]], [[np.nan, 0, 1]], [[0, 0, 1.0]]])
    obs = Observations(positions={"points.xyz": np.concatenate([pos, np.zeros((s, 7, 3))], 1)},
                       position_valid={"points.xyz": np.c_[np.ones((s, 1), bool), np.zeros((s, 7), bool)]})
    vals, mask = build_chunks(obs, np.repeat(np.eye(4)[None], s, 0), K, (W, H), horizon=2)
    a, _ = TRAJECTORY.range("points.xyz")
    assert mask[0, 0, a] and not mask[0, 1, a] and mask[0, 2, a]
    assert np.isfinite(vals).all()


def test_horizon_bounds():
    with pytest.raises(ValueError):
        build_chunks(Observations(), np.eye(4)[None], None, None, horizon=TRAJ_HORIZON + 1)
