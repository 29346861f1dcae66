"""Navigation decisions -> the slots and masks of one episode, as every VLN converter fills them.

A row is one decision: the observation (pose, frame) *before* an action, and that action; the last
row carries STOP. ``nav.command`` = (forward m, turn rad + = left, pitch rad + = up, stop 0/1);
``nav.waypoints`` = the next K poses in the current agent frame, masked past the episode's end;
``state.base.pose`` = (x, y, yaw) in the planar world of ``geometry``, ``state.base.z`` = floor height.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from vlaflow.schemas import ACTION, STATE, Embodiment, EmbodimentRegistry
from vlaflow.schemas.slots import NAV_WAYPOINTS

from .errors import MissingStop, UnknownAction
from .geometry import waypoint_chunks

# No VLN source has a clock: one decision per tick, at this constant, documented rate.
DECISION_FPS = Fraction(1)
TASK_FAMILY = "navigation"

_CMD = ACTION.range("nav.command")
_WPT = ACTION.range("nav.waypoints")
_POSE = STATE.range("base.pose")
_Z = STATE.range("base.z")

# Habitat discrete action ids (VLN-CE; RxR-CE adds 4/5).
STOP, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT, LOOK_UP, LOOK_DOWN = 0, 1, 2, 3, 4, 5


def step_params(embodiment: Embodiment) -> tuple[float, float, float]:
    """(forward m, turn rad, pitch rad) of a discrete embodiment, read from its YAML."""
    ex = embodiment.extra
    return (float(ex["forward_m"]), float(np.deg2rad(ex["turn_deg"])), float(np.deg2rad(ex.get("pitch_deg") or 0)))


def habitat_steps(turn_deg: int, embodiments: EmbodimentRegistry) -> tuple[str, float, float, float, set[int]]:
    """``--opt turn_deg`` (15 or 30) → (embodiment, forward m, turn rad, pitch rad, allowed action ids)."""
    embodiment = f"nav_habitat_{turn_deg}deg"
    forward_m, turn_rad, pitch_rad = step_params(embodiments.get(embodiment))
    allowed = {STOP, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT} | ({LOOK_UP, LOOK_DOWN} if turn_deg == 30 else set())
    return embodiment, forward_m, turn_rad, pitch_rad, allowed


def end_with_stop(moves, allowed: set[int], *, append: bool, first: int = 0) -> tuple[np.ndarray, bool]:
    """Habitat action ids, checked against ``allowed``, ending with one STOP: appended where the source leaves
    it implicit (``append``), else required. Returns the ids and whether STOP was appended; ``first`` is the
    source position of ``moves[0]`` (for messages)."""
    moves = np.asarray(moves, np.int64)
    bad = sorted(set(moves.tolist()) - allowed)
    if bad:
        raise UnknownAction(f"action ids {bad} not in {sorted(allowed)}")
    if not append and moves[-1] != STOP:
        raise MissingStop(f"actions do not end with STOP (last id {int(moves[-1])}, {len(moves)} actions)")
    early = np.nonzero(moves[:-1] == STOP)[0]
    if len(early):
        raise MissingStop(f"STOP at action {int(early[0]) + first} of {len(moves)}, before the end")
    if len(moves) and moves[-1] == STOP:
        return moves, False
    return np.concatenate([moves, [STOP]]).astype(np.int64), True


def discrete_commands(actions, forward_m: float, turn_rad: float, pitch_rad: float) -> np.ndarray:
    """Habitat action ids -> nav.command rows (the id itself stays in ``action_raw``)."""
    a = np.asarray(actions, np.int64)
    cmd = np.zeros((len(a), 4), np.float64)
    cmd[a == MOVE_FORWARD, 0] = forward_m
    cmd[a == TURN_LEFT, 1] = turn_rad
    cmd[a == TURN_RIGHT, 1] = -turn_rad
    cmd[a == LOOK_UP, 2] = pitch_rad
    cmd[a == LOOK_DOWN, 2] = -pitch_rad
    cmd[a == STOP, 3] = 1.0
    return cmd


def nav_arrays(poses: np.ndarray, commands: np.ndarray, action_raw, state_raw, z: np.ndarray | None = None,
               with_state: bool = True) -> dict:
    """The ``make_episode`` arrays of one path: ``poses`` [T, 3] planar (x, y, yaw) before each decision,
    ``commands`` [T, 4]. The default flags fit: the last row is STOP, which ends the episode (terminal)."""
    poses = np.asarray(poses, np.float64)
    t = len(poses)
    action = np.zeros((t, ACTION.width), np.float32)
    amask = np.zeros((t, ACTION.width), bool)
    action[:, _CMD[0]:_CMD[1]] = commands
    amask[:, _CMD[0]:_CMD[1]] = True
    wp, wmask = waypoint_chunks(poses, NAV_WAYPOINTS)
    action[:, _WPT[0]:_WPT[1]] = np.where(wmask, wp, 0.0)
    amask[:, _WPT[0]:_WPT[1]] = wmask
    state = np.zeros((t, STATE.width), np.float32)
    smask = np.zeros(STATE.width, bool)
    if with_state:
        state[:, _POSE[0]:_POSE[1]] = poses
        smask[_POSE[0]:_POSE[1]] = True
        if z is not None:
            state[:, _Z[0]] = np.asarray(z, np.float64)
            smask[_Z[0]] = True
    return dict(action=action, action_mask=amask, action_raw=np.asarray(action_raw, np.float32).reshape(t, -1),
                state=state, state_mask=smask, state_raw=np.asarray(state_raw, np.float32).reshape(t, -1))
