"""The in-memory episode every converter yields, and its conversion to a step table.

Converters fill NumPy arrays; this module owns turning them into rows of the unified schema, so no
converter builds Arrow itself and every family pads, masks and names slots the same way.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .arrow import (
    CONVERSATION_TYPE,
    IMAGE_TYPE,
    IMAGES_TYPE,
    TRAJECTORY_MASK_TYPE,
    TRAJECTORY_TYPE,
    VIDEO_REF_TYPE,
    VIDEOS_TYPE,
    episodes_schema,
    step_schema,
)
from .columns import CAMERA_ROLES, Col, EpCol
from .slots import ACTION, STATE, TRAJ_HORIZON, TRAJECTORY


@dataclass
class VideoClip:
    """A camera's frames as video: the converter hands over an encoded MP4 of the episode (``data``) with the
    clip frame shown at each step; the shard writer appends it to the shard's MP4, sets ``path`` (relative to
    the output root) and rebases ``frame_index`` to that file."""

    frame_index: np.ndarray  # int [T], presentation-order frame index per step
    data: bytes | None = None
    path: str = ""


@dataclass
class Episode:
    dataset: str
    episode_id: str
    embodiment: str
    embodiment_prompt: str
    task_family: str
    timestamp_ns: np.ndarray  # int64 [T]
    action: np.ndarray  # float32 [T, ACTION.width], zero where masked out
    action_mask: np.ndarray  # bool [ACTION.width] or [T, ACTION.width]
    action_raw: np.ndarray  # float32 [T, R]
    state: np.ndarray  # float32 [T, STATE.width]
    state_mask: np.ndarray  # bool [STATE.width] or [T, STATE.width]
    state_raw: np.ndarray  # float32 [T, S]
    is_first: np.ndarray
    is_last: np.ndarray
    is_terminal: np.ndarray
    action_valid: np.ndarray  # bool [T]; False where the source action is undefined (RLDS last step)
    instruction: str | list[str] = ""  # one per episode, or one per step
    instructions: list[str] = field(default_factory=list)  # every instruction the source has
    language: str = "en"
    images: dict[str, list] = field(default_factory=dict)  # role -> T encoded bytes (or None)
    reward: np.ndarray | None = None
    discount: np.ndarray | None = None
    split: str = ""
    source_file: str = ""
    source_index: int = -1
    extra: dict = field(default_factory=dict)  # source episode metadata, kept as JSON
    trajectory: np.ndarray | None = None  # float32 [T, TRAJ_HORIZON, TRAJECTORY.width], zero where masked
    trajectory_mask: np.ndarray | None = None  # bool, same shape
    videos: dict[str, VideoClip] = field(default_factory=dict)  # role -> frames stored as video
    raw: dict = field(default_factory=dict)  # raw side-table column -> T per-step values (schemas/raw.py)
    # vision_language rows: per step, the turns [{"role": ..., "text": ...}] (or None); None on other families
    conversation: list | None = None

    @property
    def length(self) -> int:
        return len(self.timestamp_ns)


def _fixed_list(values: np.ndarray, width: int, pa_type) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=pa_type)
    return pa.FixedSizeListArray.from_arrays(flat, width)


def _var_list(parts: list[np.ndarray]) -> pa.ListArray:
    """Per-episode [T, k] float arrays (k may differ between episodes) → list<float32>."""
    widths = np.concatenate([np.full(len(p), p.shape[1], np.int32) for p in parts])
    offsets = np.zeros(len(widths) + 1, np.int32)
    np.cumsum(widths, out=offsets[1:])
    values = np.concatenate([np.ascontiguousarray(p, dtype=np.float32).reshape(-1) for p in parts])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.float32()))


def _per_episode(values: list[str], lengths: np.ndarray) -> pa.DictionaryArray:
    """One string per episode, repeated over its steps, without materializing the repeats."""
    uniq = list(dict.fromkeys(values))
    codes = np.repeat(np.array([uniq.index(v) for v in values], np.int32), lengths)
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(uniq, pa.string()))


def _images_array(eps: list[Episode], total: int) -> pa.StructArray:
    children = []
    for role in CAMERA_ROLES:
        if not any(ep.images.get(role) is not None for ep in eps):
            children.append(pa.nulls(total, IMAGE_TYPE))
            continue
        frames: list = []
        for ep in eps:
            f = ep.images.get(role)
            frames.extend(f if f is not None else [None] * ep.length)
        data = pa.array(frames, type=pa.binary())
        children.append(pa.StructArray.from_arrays(
            [data, pa.nulls(total, pa.string())], fields=list(IMAGE_TYPE), mask=data.is_null()))
    return pa.StructArray.from_arrays(children, fields=list(IMAGES_TYPE))


def _optional(eps: list[Episode], name: str, total: int) -> pa.Array:
    parts = [getattr(ep, name) for ep in eps]
    if all(p is None for p in parts):
        return pa.nulls(total, pa.float32())
    values = np.concatenate([np.zeros(ep.length, np.float32) if p is None else np.asarray(p, np.float32)
                             for ep, p in zip(eps, parts)])
    mask = np.concatenate([np.full(ep.length, p is None) for ep, p in zip(eps, parts)])
    return pa.array(values, mask=mask)


def _trajectory_arrays(eps: list[Episode], total: int) -> tuple[pa.Array, pa.Array]:
    if all(ep.trajectory is None for ep in eps):
        return pa.nulls(total, TRAJECTORY_TYPE), pa.nulls(total, TRAJECTORY_MASK_TYPE)
    shape = (TRAJ_HORIZON, TRAJECTORY.width)
    vals = np.concatenate([np.zeros((ep.length, *shape), np.float32) if ep.trajectory is None
                           else np.asarray(ep.trajectory, np.float32) for ep in eps])
    masks = np.concatenate([np.zeros((ep.length, *shape), bool) if ep.trajectory is None
                            else np.asarray(ep.trajectory_mask, bool) for ep in eps])
    missing = pa.array(np.concatenate([np.full(ep.length, ep.trajectory is None) for ep in eps]))

    def nested(flat, pa_type):
        inner = _fixed_list(flat, TRAJECTORY.width, pa_type)
        return pa.FixedSizeListArray.from_arrays(inner, TRAJ_HORIZON, mask=missing)

    return nested(vals, pa.float32()), nested(masks, pa.bool_())


def _videos_array(eps: list[Episode], total: int) -> pa.StructArray:
    children = []
    for role in CAMERA_ROLES:
        if not any(role in ep.videos for ep in eps):
            children.append(pa.nulls(total, VIDEO_REF_TYPE))
            continue
        paths, index, missing = [], [], []
        for ep in eps:
            clip = ep.videos.get(role)
            paths.extend([clip.path if clip else None] * ep.length)
            index.append(np.zeros(ep.length, np.int32) if clip is None else np.asarray(clip.frame_index, np.int32))
            missing.append(np.full(ep.length, clip is None))
        children.append(pa.StructArray.from_arrays(
            [pa.array(paths, pa.string()), pa.array(np.concatenate(index))], fields=list(VIDEO_REF_TYPE),
            mask=pa.array(np.concatenate(missing))))
    return pa.StructArray.from_arrays(children, fields=list(VIDEOS_TYPE))


def conversation_array(eps: list[Episode], total: int) -> pa.Array:
    if all(ep.conversation is None for ep in eps):
        return pa.nulls(total, CONVERSATION_TYPE)
    rows: list = []
    for ep in eps:
        rows.extend([None] * ep.length if ep.conversation is None else
                    [None if turns is None else [{"role": t["role"], "text": t["text"]} for t in turns]
                     for turns in ep.conversation])
    return pa.array(rows, type=CONVERSATION_TYPE)


def episodes_to_table(eps: list[Episode], schema: pa.Schema | None = None) -> pa.Table:
    """Several episodes → one table (one Arrow call per column, not per episode)."""
    schema = schema or step_schema()
    lengths = np.array([ep.length for ep in eps], np.int64)
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    cat = lambda name, dtype: np.concatenate([np.asarray(getattr(ep, name), dtype) for ep in eps])
    masks = lambda name, w: np.concatenate([np.broadcast_to(getattr(ep, name), (ep.length, w)) for ep in eps])
    instr = [x for ep in eps for x in ([ep.instruction] * ep.length if isinstance(ep.instruction, str)
                                       else ep.instruction)]
    columns = {
        Col.DATASET: _per_episode([ep.dataset for ep in eps], lengths),
        Col.EPISODE_ID: _per_episode([ep.episode_id for ep in eps], lengths).cast(pa.string()),
        Col.STEP_INDEX: pa.array((np.arange(total) - starts).astype(np.int32)),
        Col.TIMESTAMP_NS: pa.array(cat("timestamp_ns", np.int64)),
        Col.TASK_FAMILY: _per_episode([ep.task_family for ep in eps], lengths),
        Col.EMBODIMENT: _per_episode([ep.embodiment for ep in eps], lengths),
        Col.EMBODIMENT_PROMPT: _per_episode([ep.embodiment_prompt for ep in eps], lengths),
        Col.INSTRUCTION: pa.array(instr, pa.string()),
        Col.LANGUAGE: _per_episode([ep.language for ep in eps], lengths),
        Col.IMAGES: _images_array(eps, total),
        Col.STATE: _fixed_list(cat("state", np.float32), STATE.width, pa.float32()),
        Col.STATE_MASK: _fixed_list(masks("state_mask", STATE.width), STATE.width, pa.bool_()),
        Col.STATE_RAW: _var_list([ep.state_raw for ep in eps]),
        Col.ACTION: _fixed_list(cat("action", np.float32), ACTION.width, pa.float32()),
        Col.ACTION_MASK: _fixed_list(masks("action_mask", ACTION.width), ACTION.width, pa.bool_()),
        Col.ACTION_RAW: _var_list([ep.action_raw for ep in eps]),
        Col.ACTION_VALID: pa.array(cat("action_valid", bool)),
        Col.IS_FIRST: pa.array(cat("is_first", bool)),
        Col.IS_LAST: pa.array(cat("is_last", bool)),
        Col.IS_TERMINAL: pa.array(cat("is_terminal", bool)),
        Col.REWARD: _optional(eps, "reward", total),
        Col.DISCOUNT: _optional(eps, "discount", total),
    }
    columns[Col.TRAJECTORY], columns[Col.TRAJECTORY_MASK] = _trajectory_arrays(eps, total)
    columns[Col.VIDEOS] = _videos_array(eps, total)
    columns[Col.CONVERSATION] = conversation_array(eps, total)
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def episode_to_table(ep: Episode, schema: pa.Schema | None = None) -> pa.Table:
    return episodes_to_table([ep], schema)


def episode_row(ep: Episode, shard_file: str, row_group: int = -1) -> dict:
    """One row of the episodes table (``row_group`` is known once the shard is written)."""
    first = ep.instruction if isinstance(ep.instruction, str) else (ep.instruction[0] if ep.length else "")
    return {
        EpCol.DATASET: ep.dataset, EpCol.EPISODE_ID: ep.episode_id, EpCol.LENGTH: ep.length,
        EpCol.INSTRUCTION: first, EpCol.INSTRUCTIONS: list(ep.instructions or ([first] if first else [])),
        EpCol.LANGUAGE: ep.language, EpCol.EMBODIMENT: ep.embodiment, EpCol.SPLIT: ep.split,
        EpCol.SOURCE_FILE: ep.source_file, EpCol.SOURCE_INDEX: int(ep.source_index),
        EpCol.SHARD_FILE: shard_file, EpCol.ROW_GROUP: row_group, EpCol.EXTRA: json.dumps(ep.extra, sort_keys=True, default=str),
    }


def episodes_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=episodes_schema())
