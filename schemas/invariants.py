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
import pyarrow.compute as pc

from .arrow import fixed_to_numpy, trajectory_to_numpy
from .columns import CONVERSATION_ROLES, IMAGE_PLACEHOLDER, TASK_FAMILIES, VISION_LANGUAGE, VL_IMAGE_ROLES, Col
from .slots import ACTION, STATE, TRAJECTORY, Layout

INVARIANT = "invariant_violation"
NON_FINITE = "non_finite_value"
UNKNOWN_ROLE = "unknown_role"
PLACEHOLDER_MISMATCH = "placeholder_mismatch"
NON_UTF8 = "non_utf8_text"


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


def _strings(arr: pa.Array) -> np.ndarray:
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr.to_numpy(zero_copy_only=False).astype(object)


def vl_image_counts(table: pa.Table) -> np.ndarray:
    """Images per row in the vision-language roles, stored as bytes or as video frames."""
    count = np.zeros(table.num_rows, np.int64)
    for col in (Col.IMAGES, Col.VIDEOS):
        if col not in table.column_names:
            continue
        arr = table[col].combine_chunks()
        parent = arr.is_valid().to_numpy(zero_copy_only=False)
        for role in VL_IMAGE_ROLES:
            count += parent & arr.field(role).is_valid().to_numpy(zero_copy_only=False)
    return count


def conversation_values(ids: np.ndarray, families: np.ndarray, conversation: pa.Array, image_counts: np.ndarray,
                        action_used: np.ndarray, state_used: np.ndarray, trajectory_present: np.ndarray
                        ) -> list[Problem]:
    """Vision-language rows carry a conversation and nothing to act on; no other row has one. A conversation has
    turns of the known roles, valid UTF-8 text, at least one non-empty assistant turn, and exactly as many image
    placeholders as the row has images."""
    problems = []

    def first(rows: np.ndarray) -> str:
        r = int(np.nonzero(rows)[0][0])
        return f"episode {ids[r]} step row {r}"

    vl = families == VISION_LANGUAGE
    has = conversation.is_valid().to_numpy(zero_copy_only=False)
    for rows, what in ((has & ~vl, "conversation set on a row that is not vision_language"),
                       (vl & ~has, "vision_language row without a conversation"),
                       (vl & action_used, "vision_language row with action slots (it has no action)"),
                       (vl & state_used, "vision_language row with state slots (it has no body)"),
                       (vl & trajectory_present, "vision_language row with a trajectory target")):
        if rows.any():
            problems.append(Problem(INVARIANT, f"{what}: {first(rows)}"))
    if not has.any():
        return problems
    lengths = conversation.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    parent = np.repeat(np.arange(len(conversation)), lengths)
    turns = conversation.flatten()
    texts = turns.field("text")
    try:
        texts.validate(full=True)
    except pa.ArrowInvalid as err:
        return problems + [Problem(NON_UTF8, f"conversation text is not valid UTF-8 ({err})")]
    roles = _strings(turns.field("role"))
    bad = ~np.isin(roles, CONVERSATION_ROLES)
    if bad.any():
        problems.append(Problem(UNKNOWN_ROLE, f"conversation role {roles[bad][0]!r} not in {CONVERSATION_ROLES}: "
                                              f"{first(np.isin(np.arange(len(has)), parent[bad]))}"))
    n = len(has)
    answered = np.bincount(parent[(roles == "assistant") & (pc.utf8_length(texts).to_numpy(zero_copy_only=False) > 0)],
                           minlength=n)
    if np.any(has & (answered == 0)):
        problems.append(Problem(INVARIANT, f"conversation without a non-empty assistant turn: "
                                           f"{first(has & (answered == 0))}"))
    placeholders = np.bincount(parent, weights=pc.count_substring(texts, IMAGE_PLACEHOLDER).to_numpy(
        zero_copy_only=False), minlength=n).astype(np.int64)
    off = has & (placeholders != image_counts)
    if off.any():
        r = int(np.nonzero(off)[0][0])
        problems.append(Problem(PLACEHOLDER_MISMATCH, f"{placeholders[r]} {IMAGE_PLACEHOLDER} placeholder(s) for "
                                                      f"{image_counts[r]} image(s): {first(off)}"))
    return problems


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
    if Col.CONVERSATION in table.column_names:
        traj_present = (table[Col.TRAJECTORY].combine_chunks().is_valid().to_numpy(zero_copy_only=False)
                        if Col.TRAJECTORY in table.column_names else np.zeros(table.num_rows, bool))
        problems += conversation_values(
            ids, _strings(families),
            table[Col.CONVERSATION].combine_chunks(), vl_image_counts(table),
            fixed_to_numpy(table[Col.ACTION_MASK], ACTION.width).any(axis=1),
            fixed_to_numpy(table[Col.STATE_MASK], STATE.width).any(axis=1), traj_present)
    return problems
