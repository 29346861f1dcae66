"""The data invariants of step rows, each defined once.

Every check works on arrays over consecutive rows of one or more episodes (rows of one episode are
contiguous), so the same function guards an episode before it is written (``validate_episode``: the first
problem quarantines it with its code) and re-checks a whole shard in ``vlaflow validate``
(``check_step_table``: every problem reported).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .arrow import fixed_to_numpy, trajectory_to_numpy
from .columns import TASK_FAMILIES, Col
from .slots import ACTION, STATE, TRAJECTORY, Layout

INVARIANT = "invariant_violation"
NON_FINITE = "non_finite_value"


@dataclass(frozen=True)
class Problem:
    code: str  # the quarantine reason code
    message: str


def episode_starts(ids: np.ndarray) -> np.ndarray:
    """True on the first row of each run of equal episode ids."""
    return np.r_[True, ids[1:] != ids[:-1]] if len(ids) else np.zeros(0, bool)


def sequencing(ids: np.ndarray, is_first, is_last, is_terminal, timestamp_ns, step_index=None) -> list[Problem]:
    """Steps 0..T-1 in order, flags exactly on the first/last step, integer time strictly increasing."""
    problems = []
    ids = np.asarray(ids)
    n = len(ids)
    start = episode_starts(ids)
    end = np.r_[start[1:], True] if n else start
    starts = np.nonzero(start)[0]
    if len(set(ids[starts].tolist())) != len(starts):
        problems.append(Problem(INVARIANT, "an episode's steps are not contiguous"))
    if step_index is not None:
        expected = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        step = np.asarray(step_index)
        if not np.array_equal(step, expected):
            bad = int(np.nonzero(step != expected)[0][0])
            problems.append(Problem(INVARIANT, f"step_index not 0..T-1 in episode {ids[bad]} (row {bad})"))
    if not np.array_equal(np.asarray(is_first, bool), start):
        problems.append(Problem(INVARIANT, "is_first must be set exactly on each episode's first step"))
    if not np.array_equal(np.asarray(is_last, bool), end):
        problems.append(Problem(INVARIANT, "is_last must be set exactly on each episode's last step"))
    if np.any(np.asarray(is_terminal, bool) & ~end):
        problems.append(Problem(INVARIANT, "is_terminal set before an episode's last step"))
    ts = np.asarray(timestamp_ns)
    if ts.dtype != np.int64:
        problems.append(Problem(INVARIANT, f"timestamp_ns must be int64, got {ts.dtype}"))
    elif n > 1 and np.any((np.diff(ts) <= 0) & ~start[1:]):
        problems.append(Problem(INVARIANT, "timestamp_ns not strictly increasing within an episode"))
    return problems


def masked_values(name: str, values: np.ndarray, mask: np.ndarray, layout: Layout,
                  used_rows: np.ndarray | None = None) -> list[Problem]:
    """Masked-out slots hold exactly 0; used slots (on ``used_rows``) are finite."""
    problems = []
    m = np.broadcast_to(np.asarray(mask, bool), values.shape)
    if np.any(values[~m] != 0):
        problems.append(Problem(INVARIANT, f"{name} has non-zero values in masked-out slots"))
    rows = np.ones(len(values), bool) if used_rows is None else np.asarray(used_rows, bool)
    bad = ~np.isfinite(values[rows]) & m[rows]
    if bad.any():
        r = int(np.nonzero(bad.any(axis=1))[0][0])
        step = int(np.nonzero(rows)[0][r])
        col = layout.value_names()[int(np.nonzero(bad[r])[0][0])]
        problems.append(Problem(NON_FINITE, f"non-finite {name} value in {col} at step {step}"))
    return problems


def trajectory_values(traj: np.ndarray, mask: np.ndarray) -> list[Problem]:
    """[N, H, width] targets: masked values are 0, used ones finite."""
    problems = []
    if np.any(traj[~mask] != 0):
        problems.append(Problem(INVARIANT, "trajectory has non-zero values where masked out"))
    bad = ~np.isfinite(traj) & mask
    if bad.any():
        step, k, j = (int(x[0]) for x in np.nonzero(bad))
        problems.append(Problem(NON_FINITE, f"non-finite trajectory value {TRAJECTORY.value_names()[j]} at step "
                                            f"{step}, horizon {k}"))
    return problems


def task_family(values) -> list[Problem]:
    bad = sorted(set(values) - set(TASK_FAMILIES))
    return [Problem(INVARIANT, f"task_family values {bad} not in {TASK_FAMILIES}")] if bad else []


def check_step_table(table: pa.Table) -> list[Problem]:
    """Every row-level invariant of a table of step rows (a shard, or a writer's batch)."""
    if table.num_rows == 0:
        return [Problem(INVARIANT, "no rows")]
    ids = table[Col.EPISODE_ID].to_numpy(zero_copy_only=False)
    problems = sequencing(ids, table[Col.IS_FIRST].to_numpy(zero_copy_only=False),
                          table[Col.IS_LAST].to_numpy(zero_copy_only=False),
                          table[Col.IS_TERMINAL].to_numpy(zero_copy_only=False),
                          table[Col.TIMESTAMP_NS].to_numpy(), table[Col.STEP_INDEX].to_numpy())
    valid = table[Col.ACTION_VALID].to_numpy(zero_copy_only=False)
    problems += masked_values(Col.ACTION, fixed_to_numpy(table[Col.ACTION], ACTION.width),
                              fixed_to_numpy(table[Col.ACTION_MASK], ACTION.width), ACTION, valid)
    problems += masked_values(Col.STATE, fixed_to_numpy(table[Col.STATE], STATE.width),
                              fixed_to_numpy(table[Col.STATE_MASK], STATE.width), STATE)
    families = table[Col.TASK_FAMILY].combine_chunks()
    if pa.types.is_dictionary(families.type):
        families = families.dictionary_decode()
    problems += task_family(families.unique().to_pylist())
    if Col.TRAJECTORY in table.column_names:
        traj, tmask = table[Col.TRAJECTORY].combine_chunks(), table[Col.TRAJECTORY_MASK].combine_chunks()
        if not np.array_equal(traj.is_valid().to_numpy(zero_copy_only=False),
                              tmask.is_valid().to_numpy(zero_copy_only=False)):
            problems.append(Problem(INVARIANT, "trajectory and trajectory_mask are null on different rows"))
        elif traj.null_count < len(traj):
            problems += trajectory_values(*trajectory_to_numpy(table))
    return problems
