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

from .arrow import fixed_to_numpy, strings_to_numpy, trajectory_to_numpy
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


def turn_problems(turns: list, n_images: int) -> list[Problem]:
    """One row's conversation: turns of the known roles with UTF-8 text, at least one non-empty assistant turn,
    exactly one image placeholder per image of the row."""
    problems = []
    roles = [t.get("role") for t in turns]
    bad = [r for r in roles if r not in CONVERSATION_ROLES]
    if bad:
        problems.append(Problem(UNKNOWN_ROLE, f"conversation role {bad[0]!r} not in {CONVERSATION_ROLES}"))
    for t in turns:
        try:
            t["text"].encode("utf-8")
        except UnicodeEncodeError as err:
            problems.append(Problem(NON_UTF8, f"conversation text is not valid UTF-8 ({err.reason})"))
            break
    if not any(t.get("role") == "assistant" and t["text"].strip() for t in turns):
        problems.append(Problem(INVARIANT, "conversation without a non-empty assistant turn"))
    found = sum(t["text"].count(IMAGE_PLACEHOLDER) for t in turns)
    if found != n_images:
        problems.append(Problem(PLACEHOLDER_MISMATCH, f"{found} {IMAGE_PLACEHOLDER} placeholder(s) for {n_images} "
                                                      "image(s)"))
    return problems


def conversation_values(ids: np.ndarray, families: np.ndarray, conversations: list, image_counts: np.ndarray,
                        action_used: np.ndarray, state_used: np.ndarray, trajectory_present: np.ndarray
                        ) -> list[Problem]:
    """Vision-language rows carry a conversation (``turn_problems``) and nothing to act on; no other row has
    one. ``conversations``: per row, its turns as Python dicts or None. The first row of each problem is named."""
    problems = []

    def where(r: int) -> str:
        return f"episode {ids[r]} (row {r})"

    vl = families == VISION_LANGUAGE
    has = np.array([c is not None for c in conversations], bool)
    for rows, what in ((has & ~vl, "conversation set on a row that is not vision_language"),
                       (vl & ~has, "vision_language row without a conversation"),
                       (vl & action_used, "vision_language row with action slots (it has no action)"),
                       (vl & state_used, "vision_language row with state slots (it has no body)"),
                       (vl & trajectory_present, "vision_language row with a trajectory target")):
        if rows.any():
            problems.append(Problem(INVARIANT, f"{what}: {where(int(np.nonzero(rows)[0][0]))}"))
    reported: set[str] = set()  # the first row of each kind of problem
    for r in np.nonzero(has)[0]:
        for p in turn_problems(conversations[r], int(image_counts[r])):
            kind = p.message.split(" ", 1)[0] if p.code == INVARIANT else p.code
            if kind not in reported:
                reported.add(kind)
                problems.append(Problem(p.code, f"{p.message}: {where(int(r))}"))
    return problems


def _conversations(table: pa.Table) -> tuple[list, list[Problem]]:
    """The conversation column as Python (None on rows without), after a full UTF-8 check of its text."""
    arr = table[Col.CONVERSATION].combine_chunks()
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid as err:
        return [None] * len(arr), [Problem(NON_UTF8, f"conversation text is not valid UTF-8 ({err})")]
    if arr.null_count == len(arr):
        return [None] * len(arr), []
    return arr.to_pylist(), []


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
        conversations, utf8 = _conversations(table)
        problems += utf8 + conversation_values(
            ids, strings_to_numpy(families), conversations, vl_image_counts(table),
            fixed_to_numpy(table[Col.ACTION_MASK], ACTION.width).any(axis=1),
            fixed_to_numpy(table[Col.STATE_MASK], STATE.width).any(axis=1), traj_present)
    return problems
