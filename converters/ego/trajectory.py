"""Future-trajectory targets: observations over time → chunks in the camera frame of the current row.

A source gives, per sampled frame, world-frame positions (and wrist rotations) of named targets and the
camera pose. ``build_chunks`` re-expresses sample s + k in the camera of sample s (OpenCV: x right, y down,
z forward), projects with the intrinsics to normalized image coordinates, and masks what is unknown:
horizon steps past the episode end, joints below the confidence threshold, NaN poses, and (for ``*_uv``)
points behind the camera or outside the image. Masked values are 0. Offset 0 of the returned chunk is the
current sample (used for ``state``); offsets 1..H are the targets.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from vlaflow.schemas import TRAJ_HORIZON, TRAJECTORY
from vlaflow.schemas.rotations import matrix_to_rotvec

# ARKit / OpenGL camera axes (x right, y up, z backward) ↔ OpenCV (x right, y down, z forward).
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])

# Which uv slot holds the projection of which position slot.
UV_OF = {"left_hand.wrist_pos": "left_hand.wrist_uv", "left_hand.fingertips": "left_hand.fingertips_uv",
         "right_hand.wrist_pos": "right_hand.wrist_uv", "right_hand.fingertips": "right_hand.fingertips_uv",
         "points.xyz": "points.uv"}


def cv_camera_from_world(camera_to_world: np.ndarray, convention: str = "arkit") -> np.ndarray:
    """[S,4,4] camera poses (camera → world) → [S,4,4] world → OpenCV camera transforms."""
    inv = np.linalg.inv(np.asarray(camera_to_world, np.float64))
    if convention in ("arkit", "opengl"):
        return GL_TO_CV @ inv
    if convention == "opencv":
        return inv
    raise ValueError(f"camera convention must be arkit, opengl or opencv, got {convention!r}")


def project(points_cam: np.ndarray, intrinsic: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """[..., 3] camera-frame points → ([..., 2] (u / width, v / height), [...] in-image and in front)."""
    p = np.asarray(points_cam, np.float64)
    z = p[..., 2]
    front = z > 1e-6
    safe = np.where(front, z, 1.0)
    k = np.asarray(intrinsic, np.float64)
    u = (k[0, 0] * p[..., 0] + k[0, 1] * p[..., 1]) / safe + k[0, 2]
    v = k[1, 1] * p[..., 1] / safe + k[1, 2]
    inside = front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    return np.stack([u / width, v / height], axis=-1), inside


@dataclass
class Observations:
    """Per-sample world-frame observations, S samples. Positions are [S, n, 3] with validity [S, n]; a
    slot's n is its width / 3 (wrist 1, fingertips 5, points up to TRAJ_POINTS). Rotations are [S, 3, 3]."""

    positions: dict[str, np.ndarray] = field(default_factory=dict)
    position_valid: dict[str, np.ndarray] = field(default_factory=dict)
    rotations: dict[str, np.ndarray] = field(default_factory=dict)
    rotation_valid: dict[str, np.ndarray] = field(default_factory=dict)
    image_points: dict[str, np.ndarray] = field(default_factory=dict)  # uv slot → [S, n, 2], already normalized
    image_valid: dict[str, np.ndarray] = field(default_factory=dict)


def build_chunks(obs: Observations, cam_from_world: np.ndarray, intrinsic: np.ndarray | None,
                 size: tuple[int, int] | None, horizon: int = TRAJ_HORIZON,
                 camera_valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """→ (values, mask), both [S, horizon + 1, TRAJECTORY.width]; offset k is sample s + k in camera s.

    ``camera_valid`` [S]: rows whose camera pose is unknown get no 3D targets (nothing to express them in)."""
    if not 1 <= horizon <= TRAJ_HORIZON:
        raise ValueError(f"horizon must be in 1..{TRAJ_HORIZON}, got {horizon}")
    T = np.asarray(cam_from_world, np.float64)
    s_count = len(T)
    h1 = horizon + 1
    j = np.arange(s_count)[:, None] + np.arange(h1)[None, :]  # [S, H+1] sample observed at offset k
    inside = j < s_count
    j = np.minimum(j, s_count - 1)
    cam_ok = np.ones(s_count, bool) if camera_valid is None else np.asarray(camera_valid, bool)
    inside_3d = inside & cam_ok[:, None]
    values = np.zeros((s_count, h1, TRAJECTORY.width), np.float64)
    mask = np.zeros(values.shape, bool)
    R, t = T[:, :3, :3], T[:, :3, 3]
    for slot, pos in obs.positions.items():
        a, b = TRAJECTORY.range(slot)
        n = (b - a) // 3
        pos = np.asarray(pos, np.float64).reshape(s_count, n, 3)
        ok = np.asarray(obs.position_valid[slot], bool).reshape(s_count, n) & np.isfinite(pos).all(-1)
        cam = np.einsum("sab,skpb->skpa", R, pos[j]) + t[:, None, None, :]  # [S, H+1, n, 3]
        good = ok[j] & inside_3d[:, :, None]
        values[:, :, a:b] = np.where(good[..., None], cam, 0).reshape(s_count, h1, 3 * n)
        mask[:, :, a:b] = np.repeat(good, 3, axis=-1)
        if intrinsic is not None and size is not None and slot in UV_OF:
            ua, ub = TRAJECTORY.range(UV_OF[slot])
            use = min(n, (ub - ua) // 2)
            uv, seen = project(np.where(good[..., None], cam, 0)[:, :, :use], intrinsic, *size)
            seen &= good[:, :, :use]
            values[:, :, ua:ua + 2 * use] = np.where(seen[..., None], uv, 0).reshape(s_count, h1, 2 * use)
            mask[:, :, ua:ua + 2 * use] = np.repeat(seen, 2, axis=-1)
    for slot, rot in obs.rotations.items():
        a, b = TRAJECTORY.range(slot)
        rot = np.asarray(rot, np.float64)
        ok = np.asarray(obs.rotation_valid[slot], bool) & np.isfinite(rot).all((-1, -2))
        rel = np.einsum("sab,skbc->skac", R, np.where(ok[:, None, None], rot, np.eye(3))[j])
        good = ok[j] & inside_3d
        values[:, :, a:b] = np.where(good[..., None], matrix_to_rotvec(rel.reshape(-1, 3, 3)).reshape(s_count, h1, 3), 0)
        mask[:, :, a:b] = good[..., None]
    for slot, uv in obs.image_points.items():
        a, b = TRAJECTORY.range(slot)
        n = (b - a) // 2
        uv = np.asarray(uv, np.float64).reshape(s_count, n, 2)
        ok = np.asarray(obs.image_valid[slot], bool).reshape(s_count, n) & np.isfinite(uv).all(-1)
        ok &= ((uv >= 0) & (uv < 1)).all(-1)
        good = ok[j] & inside[:, :, None]
        values[:, :, a:b] = np.where(good[..., None], uv[j], 0).reshape(s_count, h1, 2 * n)
        mask[:, :, a:b] = np.repeat(good, 2, axis=-1)
    return values.astype(np.float32), mask


def pad_horizon(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets (offsets 1..H) padded to the schema's TRAJ_HORIZON with masked zeros."""
    v, m = values[:, 1:], mask[:, 1:]
    extra = TRAJ_HORIZON - v.shape[1]
    if extra:
        v = np.concatenate([v, np.zeros((len(v), extra, v.shape[2]), v.dtype)], axis=1)
        m = np.concatenate([m, np.zeros((len(m), extra, m.shape[2]), bool)], axis=1)
    return np.ascontiguousarray(v), np.ascontiguousarray(m)
