"""Action chunks from unified step rows: the ``[T, D]`` windows the tokenizers and prompts consume.

A chunk holds ``horizon`` consecutive steps of one episode whose action is valid, restricted to the
positions the episode's action mask marks as real (``D`` = the embodiment's action width, e.g. 7 for
Bridge: 3 translation, 3 rotation, 1 gripper). Windows never cross an episode boundary.
"""
from __future__ import annotations

import numpy as np


def active_positions(mask) -> np.ndarray:
    """Indices of the positions a mask row (or all rows, OR-ed) marks as real."""
    mask = np.asarray(mask, bool)
    return np.flatnonzero(mask.any(0) if mask.ndim == 2 else mask)


def episode_slices(episode_ids) -> list[slice]:
    """Contiguous runs of equal episode ids (rows of an episode are contiguous in a shard)."""
    ids = np.asarray(episode_ids, object)
    if len(ids) == 0:
        return []
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    bounds = np.concatenate([[0], change, [len(ids)]])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def action_chunks(action, action_mask, action_valid, episode_ids, horizon: int, stride: int = 1,
                  positions=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All windows of ``horizon`` valid steps, every ``stride`` steps, inside each episode.

    Returns (chunks [N, horizon, D], positions [D], start row of each chunk [N]). ``positions``
    defaults to the positions any row's mask marks as real.
    """
    action = np.asarray(action)
    valid = np.asarray(action_valid, bool)
    pos = active_positions(action_mask) if positions is None else np.asarray(positions)
    out, starts = [], []
    for sl in episode_slices(episode_ids):
        rows = np.arange(sl.start, sl.stop)[valid[sl]]
        for i in range(0, len(rows) - horizon + 1, stride):
            out.append(action[rows[i:i + horizon]][:, pos])
            starts.append(rows[i])
    chunks = np.stack(out) if out else np.zeros((0, horizon, len(pos)), action.dtype)
    return chunks, pos, np.asarray(starts, np.int64)
