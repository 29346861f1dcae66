"""Named slots of the padded ``action`` and ``state`` vectors, fixed corpus-wide.

Every row's ``action`` is one float32 vector of ``ACTION.width``; a slot is a named, contiguous
range (``arm.eef_pos_delta`` = 3 values). Converters fill slots by name and the mask says which
values are real, so no column name or index is hard-coded downstream.

Conventions of the normalized vectors (the raw source values live in ``action_raw``/``state_raw``):
- positions in metres, angles in radians;
- rotations as rotation vectors (axis-angle, ``rotvec``): ``*_rot_delta`` is the rotation from the
  current to the commanded orientation, ``*_rot`` an absolute orientation, both in ``action_frame``;
- grippers absolute in [0, 1], **1 = open, 0 = closed** (Octo/OpenVLA's convention);
- ``nav.waypoints`` are K future (dx, dy, dyaw) poses in the current agent frame (x forward, y left);
  ``nav.command`` holds a discrete move's parameters (forward metres, turn, pitch, stop), the
  source's action id stays in ``action_raw``.
Changing a layout changes ``SCHEMA_VERSION``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = "1.2"  # 1.1: trajectory targets and video frame references; 1.2: vision_language rows + conversation

ROTATION_REPR = "rotvec"
GRIPPER_CONVENTION = "absolute_0_closed_1_open"
NAV_WAYPOINTS = 8
TRAJ_HORIZON = 16  # future samples a trajectory target holds (a run may use fewer; the rest is masked)
TRAJ_POINTS = 8  # free points (objects, tools, a user's own keypoints) per trajectory step


@dataclass(frozen=True)
class Slot:
    name: str
    width: int
    unit: str
    description: str


def _arm(prefix: str) -> list[Slot]:
    return [
        Slot(f"{prefix}.eef_pos_delta", 3, "m", "end-effector translation delta (x, y, z)"),
        Slot(f"{prefix}.eef_rot_delta", 3, "rad", "end-effector rotation delta, rotation vector"),
        Slot(f"{prefix}.eef_pos", 3, "m", "absolute end-effector position target"),
        Slot(f"{prefix}.eef_rot", 3, "rad", "absolute end-effector orientation, rotation vector"),
        Slot(f"{prefix}.joint_pos", 7, "rad", "absolute joint position targets (up to 7 joints)"),
        Slot(f"{prefix}.joint_pos_delta", 7, "rad", "joint position deltas (up to 7 joints)"),
        Slot(f"{prefix}.gripper", 1, "1", "gripper, absolute, 1 = open, 0 = closed"),
    ]


def _arm_state(prefix: str) -> list[Slot]:
    return [
        Slot(f"{prefix}.eef_pos", 3, "m", "end-effector position"),
        Slot(f"{prefix}.eef_rot", 3, "rad", "end-effector orientation, rotation vector"),
        Slot(f"{prefix}.joint_pos", 7, "rad", "joint positions (up to 7 joints)"),
        Slot(f"{prefix}.gripper", 1, "1", "gripper opening, 1 = open, 0 = closed"),
    ]


def _hand(prefix: str) -> list[Slot]:
    return [
        Slot(f"{prefix}.wrist_pos", 3, "m", "wrist position, current camera frame (OpenCV)"),
        Slot(f"{prefix}.wrist_rot", 3, "rad", "wrist orientation, rotation vector, camera frame"),
        Slot(f"{prefix}.fingertips", 15, "m", "five fingertip positions, camera frame"),
    ]


class Layout:
    """An ordered set of slots with name → index lookups."""

    def __init__(self, kind: str, slots: list[Slot]):
        self.kind = kind
        self.slots = tuple(slots)
        self._ranges: dict[str, tuple[int, int]] = {}
        start = 0
        for s in self.slots:
            if s.name in self._ranges:
                raise ValueError(f"duplicate slot {s.name}")
            self._ranges[s.name] = (start, start + s.width)
            start += s.width
        self.width = start

    def __contains__(self, name: str) -> bool:
        return name in self._ranges

    def range(self, name: str) -> tuple[int, int]:
        try:
            return self._ranges[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} slot {name!r}; known: {sorted(self._ranges)}") from None

    def slot(self, name: str) -> Slot:
        return self.slots[list(self._ranges).index(name)]

    def mask_for(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        mask = np.zeros(self.width, dtype=bool)
        for n in names:
            a, b = self.range(n)
            mask[a:b] = True
        return mask

    def value_names(self) -> list[str]:
        """One name per vector position, e.g. ``arm.eef_pos_delta[0]``."""
        out = []
        for s in self.slots:
            out.extend(f"{s.name}[{i}]" for i in range(s.width))
        return out

    def to_json(self) -> list[dict]:
        return [
            {"name": s.name, "start": self._ranges[s.name][0], "width": s.width, "unit": s.unit,
             "description": s.description}
            for s in self.slots
        ]


def _hand_trace(prefix: str) -> list[Slot]:
    return _hand(prefix) + [
        Slot(f"{prefix}.wrist_uv", 2, "1", "wrist projected with the intrinsics, (u / width, v / height)"),
        Slot(f"{prefix}.fingertips_uv", 10, "1", "five fingertips projected, (u / width, v / height) each"),
    ]


ACTION = Layout(
    "action",
    _arm("arm") + _arm("left_arm") + _arm("right_arm")
    + [
        Slot("base.vel", 3, "m/s,rad/s", "base velocity (vx, vy, wz), agent frame"),
        Slot("nav.command", 4, "m,rad,rad,1",
             "discrete navigation step as data: (forward m, turn rad with + = left, pitch rad with + = up, stop 0/1)"),
        Slot("nav.waypoints", 3 * NAV_WAYPOINTS, "m,rad",
             f"{NAV_WAYPOINTS} future (dx forward, dy left, dyaw) waypoints in the current agent frame"),
    ]
    + _hand("left_hand") + _hand("right_hand"),
)

STATE = Layout(
    "state",
    _arm_state("arm") + _arm_state("left_arm") + _arm_state("right_arm")
    + [
        Slot("base.pose", 3, "m,rad", "agent pose (x, y, yaw) in the dataset's world frame"),
        Slot("base.z", 1, "m", "agent height along the world frame's up axis"),
        Slot("left_hand.wrist_pos", 3, "m", "wrist position, camera frame"),
        Slot("right_hand.wrist_pos", 3, "m", "wrist position, camera frame"),
    ],
)

# One step of a future trajectory (``trajectory[t, k]`` = sample t + 1 + k), expressed in the camera frame of
# row t (OpenCV: x right, y down, z forward). ``*_uv`` are pixel coordinates divided by the image size, so
# (0.5, 0.5) is the image centre whatever the resolution; their mask is false outside the image or behind
# the camera. Free points are named per dataset (``DatasetInfo.extra["trajectory_points"]``).
TRAJECTORY = Layout(
    "trajectory",
    _hand_trace("left_hand") + _hand_trace("right_hand")
    + [
        Slot("points.xyz", 3 * TRAJ_POINTS, "m", f"{TRAJ_POINTS} free 3D points, camera frame"),
        Slot("points.uv", 2 * TRAJ_POINTS, "1", f"{TRAJ_POINTS} free points in the image, (u / width, v / height)"),
    ],
)
