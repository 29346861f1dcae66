"""Named per-trajectory transforms the simulation specs (``specs/*.yaml``) refer to.

Listed by name, next to the Open-X ones, in ``vlaflow.converters.transforms.transform_table``, so
specs stay data. Each takes a ``[T]``/``[T, k]`` array over one episode and returns the same length.
"""
from __future__ import annotations

import numpy as np

from vlaflow.schemas.rotations import quat_xyzw_to_rotvec


def _col(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[:, 0] if x.ndim == 2 and x.shape[1] == 1 else x


def osc_scale(x, input_min=-1.0, input_max=1.0, output_min=-0.05, output_max=0.05, from_controller=None):
    """robosuite ``Controller.scale_action``: clip to the input range, map linearly to the output range.

    OSC_POSE turns a [-1, 1] command into metres (``output_max`` 0.05) and radians (0.5, axis-angle).
    ``from_controller`` names which controller block of the file fills the ranges (the converter
    substitutes them); the YAML values are robosuite's defaults.
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = np.asarray(input_min, np.float64), np.asarray(input_max, np.float64)
    omin, omax = np.asarray(output_min, np.float64), np.asarray(output_max, np.float64)
    scale = np.abs(omax - omin) / np.abs(hi - lo)
    return (np.clip(x, lo, hi) - (hi + lo) / 2.0) * scale + (omax + omin) / 2.0


def sign_gripper(x, initial: float = 1.0) -> np.ndarray:
    """robosuite/LIBERO gripper command → absolute target, 1 = open.

    The Panda gripper moves by ``sign(a)``: +1 closes, -1 opens, 0 leaves it where it is. A
    positive command therefore means "closed" (0), a negative one "open" (1), and 0 holds the last
    target (``initial`` before the first command: robosuite resets with the gripper open).
    """
    x = _col(x)
    out = np.empty_like(x)
    carry = float(initial)
    for i, v in enumerate(x):
        if v > 0:
            carry = 0.0
        elif v < 0:
            carry = 1.0
        out[i] = carry
    return out


def finger_opening(x, width: float = 0.08, combine: str = "diff") -> np.ndarray:
    """Finger joint positions → opening in [0, 1] (1 = open).

    Two columns give ``(q1 - q2) / width`` (``combine: diff``, robosuite's Panda: finger 1 in
    [0, w/2], finger 2 in [-w/2, 0]) or ``(q1 + q2) / width`` (``combine: sum``, ManiSkill's Panda:
    both fingers in [0, w/2]); one column gives ``q / width``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] >= 2:
        v = x[:, 0] + x[:, 1] if combine == "sum" else x[:, 0] - x[:, 1]
    else:
        v = _col(x)
    return np.clip(v / float(width), 0.0, 1.0)


def clip_range(x, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.float64), lo, hi)


def next_step(x) -> np.ndarray:
    """a[t] = x[t + 1]: a recorded *state* used as the action that reaches it (RoboTwin's
    ``action[t] == state[t+1]``). The last step has no next state: it repeats x[-1] and is marked
    invalid (``invalidates_last``)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    out[:-1] = x[1:]
    out[-1:] = x[-1:]
    return out


next_step.invalidates_last = True


def _axis_quat(axis: int, angle: np.ndarray) -> np.ndarray:
    q = np.zeros(angle.shape + (4,))
    q[..., axis] = np.sin(angle / 2.0)
    q[..., 3] = np.cos(angle / 2.0)
    return q


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of xyzw quaternions (rotation a then... as matrices: R(a) @ R(b))."""
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz], axis=-1)


def euler_intrinsic_xyz_to_rotvec(e: np.ndarray) -> np.ndarray:
    """pytorch3d/ManiSkill3 ``euler_angles_to_matrix(e, "XYZ")`` = Rx(e0) @ Ry(e1) @ Rz(e2) → rotvec.

    Not the schema's ``euler_xyz`` (extrinsic roll-pitch-yaw, Rz @ Ry @ Rx): the two agree only to
    first order.
    """
    e = np.asarray(e, dtype=np.float64)
    q = _qmul(_qmul(_axis_quat(0, e[..., 0]), _axis_quat(1, e[..., 1])), _axis_quat(2, e[..., 2]))
    return quat_xyzw_to_rotvec(q).astype(np.float64)


def maniskill3_ee_delta_rot(x, scale: float = -0.1) -> np.ndarray:
    """ManiSkill3 ``pd_ee_delta_pose`` rotation command → the rotation it executes, as a rotvec.

    ``PDEEPoseController._clip_and_scale_action`` scales the norm-clipped command by ``rot_lower``
    (-0.1 for Panda: the sign flips, ManiSkill#1469, fix proposed in #1472 using ``rot_upper``),
    then reads the result as intrinsic XYZ euler angles. ``scale`` = +0.1 for a patched controller.
    """
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    x = np.where(n > 1.0, x / np.where(n == 0, 1.0, n), x) * float(scale)
    return euler_intrinsic_xyz_to_rotvec(x)


def norm_clip_scale(x, bound: float = 0.1) -> np.ndarray:
    """ManiSkill2 ``pd_ee_delta_pose`` rotation: norm-clip to 1, times ``rot_bound``; already a rotvec."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(n > 1.0, x / np.where(n == 0, 1.0, n), x) * float(bound)
