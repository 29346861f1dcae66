"""The Arrow schemas (step table, episodes table) and the metadata that names their slots."""
from __future__ import annotations

import json

import pyarrow as pa

from .columns import CAMERA_ROLES, CONVERSATION_ROLES, IMAGE_PLACEHOLDER, VL_IMAGE_ROLES, Col, EpCol
from .slots import (
    ACTION,
    GRIPPER_CONVENTION,
    ROTATION_REPR,
    SCHEMA_VERSION,
    STATE,
    TRAJ_HORIZON,
    TRAJECTORY,
)

METADATA_KEY = b"vlaflow"

# Hugging Face Image storage layout; `datasets` and the Hub viewer decode it as images.
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
IMAGES_TYPE = pa.struct([(role, IMAGE_TYPE) for role in CAMERA_ROLES])
# A frame stored in an MP4 beside the shard: path relative to the output root + integer frame index
# (presentation order), never a float timestamp.
VIDEO_REF_TYPE = pa.struct([("path", pa.string()), ("frame_index", pa.int32())])
VIDEOS_TYPE = pa.struct([(role, VIDEO_REF_TYPE) for role in CAMERA_ROLES])
TRAJECTORY_TYPE = pa.list_(pa.list_(pa.float32(), TRAJECTORY.width), TRAJ_HORIZON)
TRAJECTORY_MASK_TYPE = pa.list_(pa.list_(pa.bool_(), TRAJECTORY.width), TRAJ_HORIZON)

_DICT_STR = pa.dictionary(pa.int32(), pa.string())
# A vision_language row's text target: turns in order, ``role`` one of CONVERSATION_ROLES, ``text`` with
# IMAGE_PLACEHOLDER where an image is shown; null on rows of the other families.
TURN_TYPE = pa.struct([pa.field("role", _DICT_STR, nullable=False), pa.field("text", pa.string(), nullable=False)])
CONVERSATION_TYPE = pa.list_(pa.field("item", TURN_TYPE, nullable=False))


def _step_fields() -> list[pa.Field]:
    return [
        pa.field(Col.DATASET, _DICT_STR, nullable=False),
        pa.field(Col.EPISODE_ID, pa.string(), nullable=False),
        pa.field(Col.STEP_INDEX, pa.int32(), nullable=False),
        pa.field(Col.TIMESTAMP_NS, pa.int64(), nullable=False),
        pa.field(Col.TASK_FAMILY, _DICT_STR, nullable=False),
        pa.field(Col.EMBODIMENT, _DICT_STR, nullable=False),
        pa.field(Col.EMBODIMENT_PROMPT, _DICT_STR, nullable=False),
        pa.field(Col.INSTRUCTION, pa.string(), nullable=False),
        pa.field(Col.LANGUAGE, _DICT_STR, nullable=False),
        pa.field(Col.IMAGES, IMAGES_TYPE),
        pa.field(Col.STATE, pa.list_(pa.float32(), STATE.width), nullable=False),
        pa.field(Col.STATE_MASK, pa.list_(pa.bool_(), STATE.width), nullable=False),
        pa.field(Col.STATE_RAW, pa.list_(pa.float32()), nullable=False),
        pa.field(Col.ACTION, pa.list_(pa.float32(), ACTION.width), nullable=False),
        pa.field(Col.ACTION_MASK, pa.list_(pa.bool_(), ACTION.width), nullable=False),
        pa.field(Col.ACTION_RAW, pa.list_(pa.float32()), nullable=False),
        pa.field(Col.ACTION_VALID, pa.bool_(), nullable=False),
        pa.field(Col.IS_FIRST, pa.bool_(), nullable=False),
        pa.field(Col.IS_LAST, pa.bool_(), nullable=False),
        pa.field(Col.IS_TERMINAL, pa.bool_(), nullable=False),
        pa.field(Col.REWARD, pa.float32()),
        pa.field(Col.DISCOUNT, pa.float32()),
        pa.field(Col.TRAJECTORY, TRAJECTORY_TYPE),
        pa.field(Col.TRAJECTORY_MASK, TRAJECTORY_MASK_TYPE),
        pa.field(Col.VIDEOS, VIDEOS_TYPE),
        pa.field(Col.CONVERSATION, CONVERSATION_TYPE),
    ]


def _hf_features() -> dict:
    """The `huggingface` schema metadata so `datasets` shows camera columns as images."""
    seq = lambda dtype, n=-1: {"_type": "List", "feature": {"dtype": dtype, "_type": "Value"}, "length": n}
    val = lambda dtype: {"dtype": dtype, "_type": "Value"}
    return {"info": {"features": {
        Col.DATASET: val("string"), Col.EPISODE_ID: val("string"), Col.STEP_INDEX: val("int32"),
        Col.TIMESTAMP_NS: val("int64"), Col.TASK_FAMILY: val("string"), Col.EMBODIMENT: val("string"),
        Col.EMBODIMENT_PROMPT: val("string"), Col.INSTRUCTION: val("string"), Col.LANGUAGE: val("string"),
        Col.IMAGES: {role: {"_type": "Image"} for role in CAMERA_ROLES},
        Col.STATE: seq("float32", STATE.width), Col.STATE_MASK: seq("bool", STATE.width),
        Col.STATE_RAW: seq("float32"), Col.ACTION: seq("float32", ACTION.width),
        Col.ACTION_MASK: seq("bool", ACTION.width), Col.ACTION_RAW: seq("float32"),
        Col.ACTION_VALID: val("bool"), Col.IS_FIRST: val("bool"), Col.IS_LAST: val("bool"),
        Col.IS_TERMINAL: val("bool"), Col.REWARD: val("float32"), Col.DISCOUNT: val("float32"),
        Col.TRAJECTORY: {"_type": "List", "feature": seq("float32", TRAJECTORY.width), "length": TRAJ_HORIZON},
        Col.TRAJECTORY_MASK: {"_type": "List", "feature": seq("bool", TRAJECTORY.width), "length": TRAJ_HORIZON},
        Col.VIDEOS: {role: {"path": val("string"), "frame_index": val("int32")} for role in CAMERA_ROLES},
        Col.CONVERSATION: {"_type": "List", "feature": {"role": val("string"), "text": val("string")}},
    }}}


def schema_metadata(datasets: dict | None = None) -> dict:
    """The self-description every shard carries: version, slot names, per-dataset conventions."""
    return {
        "schema_version": SCHEMA_VERSION,
        "action_slots": ACTION.to_json(),
        "state_slots": STATE.to_json(),
        "trajectory_slots": TRAJECTORY.to_json(),
        "trajectory_horizon": TRAJ_HORIZON,
        "action_width": ACTION.width,
        "state_width": STATE.width,
        "rotation_repr": ROTATION_REPR,
        "gripper_convention": GRIPPER_CONVENTION,
        "camera_roles": list(CAMERA_ROLES),
        "conversation_roles": list(CONVERSATION_ROLES),
        "image_placeholder": IMAGE_PLACEHOLDER,
        "vl_image_roles": list(VL_IMAGE_ROLES),
        "datasets": datasets or {},
    }


def step_schema(datasets: dict | None = None) -> pa.Schema:
    """``datasets``: {name: DatasetInfo.to_json()} embedded so a lone shard is self-describing."""
    meta = {
        METADATA_KEY: json.dumps(schema_metadata(datasets), sort_keys=True).encode(),
        b"huggingface": json.dumps(_hf_features()).encode(),
    }
    return pa.schema(_step_fields(), metadata=meta)


def episodes_schema() -> pa.Schema:
    return pa.schema([
        pa.field(EpCol.DATASET, pa.string(), nullable=False),
        pa.field(EpCol.EPISODE_ID, pa.string(), nullable=False),
        pa.field(EpCol.LENGTH, pa.int32(), nullable=False),
        pa.field(EpCol.INSTRUCTION, pa.string(), nullable=False),
        pa.field(EpCol.INSTRUCTIONS, pa.list_(pa.string()), nullable=False),
        pa.field(EpCol.LANGUAGE, pa.string(), nullable=False),
        pa.field(EpCol.EMBODIMENT, pa.string(), nullable=False),
        pa.field(EpCol.SPLIT, pa.string(), nullable=False),
        pa.field(EpCol.SOURCE_FILE, pa.string(), nullable=False),
        pa.field(EpCol.SOURCE_INDEX, pa.int64(), nullable=False),
        pa.field(EpCol.SHARD_FILE, pa.string(), nullable=False),
        pa.field(EpCol.ROW_GROUP, pa.int32(), nullable=False),
        pa.field(EpCol.EXTRA, pa.string(), nullable=False),  # JSON of source episode metadata
    ])


def read_schema_metadata(schema: pa.Schema) -> dict:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError("not a vlaflow table: schema metadata 'vlaflow' missing")
    return json.loads(raw)


# -- reading step columns back into NumPy (statistics, invariants) ------------------------------------
def strings_to_numpy(col):
    """A (dictionary-encoded) string column as an object array, decoding each dictionary value once."""
    import numpy as np

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        names = np.asarray(arr.dictionary.to_pylist(), object)
        return names[arr.indices.to_numpy(zero_copy_only=False)]
    return np.asarray(arr.to_pylist(), object)


def fixed_to_numpy(col, width: int, dtype=None):
    """A fixed_size_list column → [N, width] NumPy (``flatten`` honours the offsets of sliced chunks)."""
    import numpy as np

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    out = arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), width)
    return out if dtype is None else out.astype(np.dtype(dtype), copy=False)


def trajectory_to_numpy(table: pa.Table):
    """The nested trajectory columns → [N, H, width] values and mask (null rows all 0 and masked out), or
    ``(None, None)`` when the table has no targets at all."""
    import numpy as np

    if Col.TRAJECTORY not in table.column_names:
        return None, None
    vals = table[Col.TRAJECTORY].combine_chunks()
    if vals.null_count == len(vals):
        return None, None
    masks = table[Col.TRAJECTORY_MASK].combine_chunks()
    shape = (TRAJ_HORIZON, TRAJECTORY.width)
    v, m = np.zeros((len(vals), *shape), np.float32), np.zeros((len(vals), *shape), bool)
    for out, arr in ((v, vals), (m, masks)):
        present = arr.is_valid().to_numpy(zero_copy_only=False)
        out[present] = arr.filter(arr.is_valid()).flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, *shape)
    return v, m
