"""The raw side table: source step features that have no place in the unified columns, kept verbatim.

One Parquet file per shard (``raw/<dataset>/...`` mirrors ``data/<dataset>/...``), rows aligned 1:1 and in
the same order as the shard's rows, so attaching them to steps is a zip, not a join. Its columns are
``episode_id``, ``step_index`` and one column per source feature, named by the feature's flattened key
(``observation/natural_language_embedding``), typed after the source: scalars as themselves, fixed-shape
tensors as fixed-size lists in C order (the shape is in the field metadata), ragged ``Sequence`` levels as
lists, strings as binary (``Text`` as string), encoded images as binary. float16 widens to float32 exactly.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from .columns import Col

KEY_FIELDS = (pa.field(Col.EPISODE_ID, pa.string(), nullable=False),
              pa.field(Col.STEP_INDEX, pa.int32(), nullable=False))
_WIDEN = {"float16": "float32"}


def raw_field(key: str, dtype: str, shape: tuple = (), ragged: int = 0, text: bool = False,
              image: bool = False, names: tuple = ()) -> pa.Field:
    """The column one source feature becomes; ``dtype`` is a NumPy dtype name ("object" for bytes)."""
    if image or (dtype == "object" and not text):
        t = pa.binary()
    elif text:
        t = pa.string()
    else:
        t = pa.from_numpy_dtype(np.dtype(_WIDEN.get(dtype, dtype)))
    fixed = [d for d in shape if d is not None]
    if shape and not image:
        t = pa.list_(t, int(np.prod(fixed))) if len(fixed) == len(shape) else pa.list_(t)
    for _ in range(ragged):
        t = pa.list_(t)
    meta = {"shape": json.dumps(list(shape)), "dtype": dtype}
    if names:
        meta["names"] = json.dumps(list(names))
    return pa.field(key, t, metadata=meta)


def raw_schema(fields: list[pa.Field]) -> pa.Schema | None:
    return pa.schema([*KEY_FIELDS, *fields]) if fields else None


def _values(v, t: pa.DataType):
    """One step's value as Arrow wants it: nested Python lists, the fixed-shape tensor flattened."""
    if pa.types.is_fixed_size_list(t) or (pa.types.is_list(t) and not isinstance(v, (list, tuple))
                                          and np.ndim(v) > 0 and not _is_nested(t.value_type)):
        return np.asarray(v).reshape(-1).tolist()
    if pa.types.is_list(t):
        return [_values(x, t.value_type) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _is_nested(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_fixed_size_list(t)


def raw_column(values, length: int, field: pa.Field) -> pa.Array:
    """``values``: a NumPy array ``[T, ...]`` or T per-step values → the field's Arrow column."""
    t = field.type
    if isinstance(values, np.ndarray) and values.dtype != object:
        if pa.types.is_fixed_size_list(t):
            flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=t.value_type)
            return pa.FixedSizeListArray.from_arrays(flat, t.list_size)
        if not _is_nested(t):
            return pa.array(values.reshape(length), type=t)
    if pa.types.is_string(t):
        return pa.array([x.decode("utf-8") if isinstance(x, bytes) else x for x in values], type=t)
    return pa.array([_values(x, t) for x in values], type=t)


def raw_table(eps: list, schema: pa.Schema) -> pa.Table:
    """The side-table rows of several episodes (each with a ``raw`` dict: column -> per-step values)."""
    columns = [pa.array([ep.episode_id for ep in eps for _ in range(ep.length)], pa.string()),
               pa.array(np.concatenate([np.arange(ep.length, dtype=np.int32) for ep in eps]))]
    for f in schema:
        if f.name in (Col.EPISODE_ID, Col.STEP_INDEX):
            continue
        columns.append(pa.concat_arrays([raw_column(ep.raw[f.name], ep.length, f) for ep in eps]))
    return pa.Table.from_arrays(columns, schema=schema)
