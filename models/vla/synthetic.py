"""Feed-format samples built from real embodiment specs (no corpus needed): for smoke runs, tests and
benchmarks of the model alone.

Raw rows get per-dimension offsets and scales in each slot's own units (metres, radians, a gripper in
[0, 1]), smooth chunks over the horizon, and masks from the spec's slots; ``stats_for`` runs the real
``StatsAccumulator`` over them and ``to_samples`` normalizes with the real ``Normalizer`` — the same path
the train feed takes, so a round trip through ``Policy.predict`` can be checked in units.
"""
from __future__ import annotations

import numpy as np

from vlaflow.schemas import ACTION, STATE, TRAJECTORY, Embodiment
from vlaflow.tokenization.normalization import Normalizer

_HAND_TRAJ = ("wrist_pos", "wrist_rot", "fingertips", "wrist_uv", "fingertips_uv")


def family_of(e: Embodiment) -> str:
    if e.kind == "human":
        return "egocentric"
    if not e.arms and any(s.startswith(("nav.", "base.")) for s in e.action_slots):
        return "navigation"
    return "manipulation"


def trajectory_slots(e: Embodiment) -> list[str]:
    """Trajectory slots a synthetic egocentric row fills: the hand traces of the hands it tracks."""
    if e.kind != "human":
        return []
    hands = sorted({s.split(".")[0] for s in e.action_slots if s.endswith("_hand.wrist_pos")})
    return [f"{h}.{k}" for h in hands for k in _HAND_TRAJ]


def raw_rows(e: Embodiment, n: int, horizon: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` rows of one embodiment in its units: state [n, S], action chunk [n, H, A], trajectory [n, H, T]."""
    def series(width, base, scale):
        t = np.linspace(0, 1, horizon)[None, :, None]
        phase = rng.uniform(0, 2 * np.pi, (n, 1, width))
        return base + scale * np.sin(2 * np.pi * t * rng.uniform(0.3, 1.0, (n, 1, width)) + phase)

    a_mask = ACTION.mask_for(list(e.action_slots))
    s_mask = STATE.mask_for(list(e.state_slots))
    t_mask = TRAJECTORY.mask_for(trajectory_slots(e))
    a_base, a_scale = rng.normal(0, 0.5, ACTION.width), rng.uniform(0.01, 0.3, ACTION.width)
    for slot in e.action_slots:
        if slot.endswith(".gripper"):
            a, b = ACTION.range(slot)
            a_base[a:b], a_scale[a:b] = 0.5, 0.5
    action = np.where(a_mask, series(ACTION.width, a_base, a_scale), 0)
    state = np.where(s_mask, rng.normal(0, 0.5, STATE.width) + rng.uniform(0.05, 0.5, STATE.width)
                     * rng.normal(size=(n, STATE.width)), 0)
    traj = np.where(t_mask, series(TRAJECTORY.width, rng.normal(0, 0.3, TRAJECTORY.width),
                                   rng.uniform(0.01, 0.1, TRAJECTORY.width)), 0)
    return {"action": action.astype(np.float32), "action_mask": np.broadcast_to(a_mask, action.shape).copy(),
            "state": state.astype(np.float32), "state_mask": np.broadcast_to(s_mask, state.shape).copy(),
            "trajectory": traj.astype(np.float32), "trajectory_mask": np.broadcast_to(t_mask, traj.shape).copy()}


def stats_for(groups: dict[tuple[str, str], dict[str, np.ndarray]]) -> dict:
    """stats.json content for {(dataset, embodiment): raw rows} through the real accumulator."""
    from vlaflow.tokenization.statistics.accumulator import StatsAccumulator

    acc = StatsAccumulator()
    for (ds, emb), r in groups.items():
        n, h = r["action"].shape[:2]
        acc.update(ds, emb, action=r["action"].reshape(n * h, -1), action_mask=r["action_mask"].reshape(n * h, -1),
                   action_valid=np.ones(n * h, bool), state=r["state"], state_mask=r["state_mask"],
                   trajectory=r["trajectory"], trajectory_mask=r["trajectory_mask"])
    return acc.to_json()


def to_samples(rows: dict[str, np.ndarray], e: Embodiment, dataset: str, stats: dict, mode: str = "quantile",
               instruction: str = "pick up the red block", vision_shape: tuple[int, int, int] | None = None,
               rng: np.random.Generator | None = None) -> list[dict]:
    """Normalized feed samples (``target`` = action ‖ trajectory) of raw rows."""
    na, ns, nt = (Normalizer(stats, mode, layout=lay) for lay in (ACTION, STATE, TRAJECTORY))
    act = na.normalize(rows["action"], dataset, e.id)
    st = ns.normalize(rows["state"], dataset, e.id)
    tr = nt.normalize(rows["trajectory"], dataset, e.id)
    rng = rng or np.random.default_rng(0)
    out = []
    for i in range(len(act)):
        s = {"dataset": dataset, "embodiment": e.id, "task_family": family_of(e), "instruction": instruction,
             "embodiment_prompt": e.prompt(), "state": st[i], "state_mask": rows["state_mask"][i],
             "target": np.concatenate([act[i], tr[i]], -1).astype(np.float32),
             "target_mask": np.concatenate([rows["action_mask"][i], rows["trajectory_mask"][i]], -1)}
        if vision_shape is not None:
            s["vision"] = rng.normal(size=vision_shape).astype(np.float16)
            s["vision_mask"] = np.ones(vision_shape[0], bool)
        out.append(s)
    return out
