"""Rotation conversions into the schema's one representation (rotation vector, radians).

Euler angles are roll-pitch-yaw about fixed x, y, z axes (extrinsic "xyz", R = Rz·Ry·Rx), the
convention of Bridge, RT-1 and most Open-X datasets. Quaternions are named by their storage order.
"""
from __future__ import annotations

import numpy as np

REPRS = ("rotvec", "euler_xyz", "quat_xyzw", "quat_wxyz")


def euler_xyz_to_quat_xyzw(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, dtype=np.float64)
    r, p, y = e[..., 0] / 2, e[..., 1] / 2, e[..., 2] / 2
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.stack([
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
        cr * cp * cy + sr * sp * sy,
    ], axis=-1)


def quat_xyzw_to_rotvec(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    q = q / np.where(norm == 0, 1.0, norm)
    q = np.where(q[..., 3:4] < 0, -q, q)  # shortest rotation: angle in [0, pi]
    v, w = q[..., :3], q[..., 3]
    n = np.linalg.norm(v, axis=-1)
    angle = 2.0 * np.arctan2(n, w)
    small = n < 1e-8
    scale = np.where(small, 2.0 / np.where(w == 0, 1.0, w), angle / np.where(small, 1.0, n))
    return v * scale[..., None]


def matrix_to_quat_xyzw(m: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotation matrices → unit quaternions, Shepperd's method (stable for every angle)."""
    m = np.asarray(m, dtype=np.float64)
    tr = np.trace(m, axis1=-2, axis2=-1)
    diag = np.stack([m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], axis=-1)
    cand = np.stack([
        np.stack([1 + 2 * diag[..., 0] - tr, m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                  m[..., 2, 1] - m[..., 1, 2]], -1),
        np.stack([m[..., 1, 0] + m[..., 0, 1], 1 + 2 * diag[..., 1] - tr, m[..., 2, 1] + m[..., 1, 2],
                  m[..., 0, 2] - m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2], 1 + 2 * diag[..., 2] - tr,
                  m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1],
                  1 + tr], -1),
    ], axis=-2)  # [..., 4 candidates, xyzw]; candidate i has its i-th component largest when chosen
    choice = np.argmax(np.concatenate([diag, tr[..., None]], axis=-1), axis=-1)
    q = np.take_along_axis(cand, choice[..., None, None], axis=-2)[..., 0, :]
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def matrix_to_rotvec(m: np.ndarray) -> np.ndarray:
    return quat_xyzw_to_rotvec(matrix_to_quat_xyzw(m))


def rotvec_to_matrix(rv: np.ndarray) -> np.ndarray:
    rv = np.asarray(rv, dtype=np.float64)
    theta = np.linalg.norm(rv, axis=-1)[..., None, None]
    k = rv / np.where(theta[..., 0] == 0, 1.0, theta[..., 0])
    kx = np.zeros(rv.shape[:-1] + (3, 3))
    kx[..., 0, 1], kx[..., 0, 2] = -k[..., 2], k[..., 1]
    kx[..., 1, 0], kx[..., 1, 2] = k[..., 2], -k[..., 0]
    kx[..., 2, 0], kx[..., 2, 1] = -k[..., 1], k[..., 0]
    eye = np.broadcast_to(np.eye(3), kx.shape)
    return eye + np.sin(theta) * kx + (1 - np.cos(theta)) * (kx @ kx)


def to_rotvec(values: np.ndarray, repr_: str) -> np.ndarray:
    """Convert an [..., k] array in ``repr_`` to [..., 3] rotation vectors (float32)."""
    if repr_ == "rotvec":
        out = np.asarray(values, dtype=np.float64)
    elif repr_ == "euler_xyz":
        out = quat_xyzw_to_rotvec(euler_xyz_to_quat_xyzw(values))
    elif repr_ == "quat_xyzw":
        out = quat_xyzw_to_rotvec(values)
    elif repr_ == "quat_wxyz":
        v = np.asarray(values)
        out = quat_xyzw_to_rotvec(np.concatenate([v[..., 1:4], v[..., 0:1]], axis=-1))
    else:
        raise ValueError(f"unknown rotation representation {repr_!r}; known: {REPRS}")
    return out.astype(np.float32)
