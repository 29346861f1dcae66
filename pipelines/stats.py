"""``vlaflow stats OUT``: normalization statistics of an ingest output, as a Ray Data job.

The job's blocks are the manifest's shards; each task reads only the columns statistics need
(``STATS_COLUMNS``: no images, no raw vectors, no text) row group by row group and returns one
partial ``StatsAccumulator`` (per (dataset, embodiment): moments + a KLL sketch per value); the
driver merges the partials in manifest order. The result is
``OUT/meta/stats.json`` (docs/stats.md), keyed by the sha256 of ``meta/manifest.json`` (which itself
holds every shard's sha256), the stats spec and the splits: a second run with the same key reads
the file back without starting Ray.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import time
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from vlaflow.schemas import ACTION, STATE, TRAJ_HORIZON, TRAJECTORY, Col, InputError
from vlaflow.tokenization.statistics.accumulator import StatsAccumulator
from vlaflow.tokenization.statistics.spec import STATS_VERSION, StatsSpec

from .layout import MANIFEST
from .storage import Output

STATS = "meta/stats.json"
STATS_COLUMNS = [Col.DATASET, Col.EMBODIMENT, Col.IS_FIRST, Col.ACTION, Col.ACTION_MASK, Col.ACTION_VALID,
                 Col.STATE, Col.STATE_MASK, Col.TRAJECTORY, Col.TRAJECTORY_MASK]


@dataclass
class StatsResult:
    stats: dict
    cached: bool
    seconds: float
    path: str
    ray: str = ""


def _fixed(col, width: int, dtype) -> np.ndarray:
    """A fixed_size_list column → [N, width] NumPy (offsets of sliced chunks handled by flatten)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    flat = arr.flatten()
    out = flat.to_numpy(zero_copy_only=False)
    return out.reshape(len(arr), width).astype(dtype, copy=False)


def _trajectory(table: pa.Table) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The nested trajectory columns → [N, H, width] values and mask (null rows fully masked), or None."""
    if Col.TRAJECTORY not in table.column_names:
        return None, None
    vals = table[Col.TRAJECTORY].combine_chunks()
    if vals.null_count == len(vals):
        return None, None
    masks = table[Col.TRAJECTORY_MASK].combine_chunks()
    present = vals.is_valid().to_numpy(zero_copy_only=False)
    shape = (TRAJ_HORIZON, TRAJECTORY.width)
    v = np.zeros((len(vals), *shape), np.float32)
    m = np.zeros((len(vals), *shape), bool)
    v[present] = vals.filter(vals.is_valid()).flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, *shape)
    m[present] = masks.filter(masks.is_valid()).flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, *shape)
    return v, m


def _strings(col) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        names = np.asarray(arr.dictionary.to_pylist(), object)
        return names[arr.indices.to_numpy(zero_copy_only=False)]
    return np.asarray(arr.to_pylist(), object)


def partial_from_table(table: pa.Table, spec: StatsSpec, seed: int | None = None) -> StatsAccumulator:
    """Statistics of one Arrow table/batch of step rows (only ``STATS_COLUMNS`` are touched).

    The sketches' compaction seed defaults to a checksum of the block's actions, so partials of
    different blocks use independent random offsets (their errors cancel rather than add) and the
    same block always gives the same partial.
    """
    action = _fixed(table[Col.ACTION], ACTION.width, np.float32) if table.num_rows else None
    if seed is None:
        seed = zlib.crc32(action[:64].tobytes()) ^ table.num_rows if action is not None else 0
    acc = StatsAccumulator(spec, seed)
    if table.num_rows == 0:
        return acc
    acc.update_rows(
        _strings(table[Col.DATASET]), _strings(table[Col.EMBODIMENT]),
        action=action,
        action_mask=_fixed(table[Col.ACTION_MASK], ACTION.width, bool),
        action_valid=table[Col.ACTION_VALID].to_numpy(zero_copy_only=False),
        state=_fixed(table[Col.STATE], STATE.width, np.float32),
        state_mask=_fixed(table[Col.STATE_MASK], STATE.width, bool),
        is_first=table[Col.IS_FIRST].to_numpy(zero_copy_only=False),
        **dict(zip(("trajectory", "trajectory_mask"), _trajectory(table))))
    return acc


def cache_key(manifest_bytes: bytes, spec: StatsSpec, splits: list[str] | None) -> str:
    h = hashlib.sha256()
    h.update(hashlib.sha256(manifest_bytes).digest())
    h.update(json.dumps({"stats_version": STATS_VERSION, "spec": spec.to_json(),
                         "splits": sorted(splits) if splits else None}, sort_keys=True).encode())
    return h.hexdigest()


def _shards(manifest: dict, splits: list[str] | None) -> list[dict]:
    shards = [s for s in manifest.get("shards", []) if not splits or s.get("split") in splits]
    if not shards:
        raise InputError("no shards to compute statistics over" + (f" in splits {splits}" if splits else ""))
    return shards


def _finish(out: Output, acc: StatsAccumulator, manifest_bytes: bytes, key: str, splits, shards) -> dict:
    doc = acc.to_json()
    doc.update({"cache_key": key, "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
                "splits": sorted(splits) if splits else None, "shards": len(shards),
                "rows": sum(g["rows"] for g in doc["groups"].values())})
    out.write_json(STATS, doc)
    return doc


def _cached(out: Output, key: str) -> dict | None:
    if not out.exists(STATS):
        return None
    try:
        doc = out.read_json(STATS)
    except (ValueError, OSError):
        return None
    return doc if doc.get("cache_key") == key else None


def _open(output: str, spec: StatsSpec | None, splits):
    out = Output(output)
    if not out.exists(MANIFEST):
        raise InputError(f"{output}: not a vlaflow ingest output (no {MANIFEST}); run `vlaflow ingest` first")
    spec = spec or StatsSpec()
    manifest_bytes = out.read_bytes(MANIFEST)
    return out, spec, manifest_bytes, cache_key(manifest_bytes, spec, splits)


def shard_partial(output_uri: str, rel_path: str, spec: StatsSpec) -> StatsAccumulator:
    """Statistics of one shard, read row group by row group and only ``STATS_COLUMNS`` of each
    (Parquet is columnar: the image bytes are never read, let alone decoded)."""
    import pyarrow.parquet as pq

    out = Output(output_uri)
    acc = StatsAccumulator(spec)
    with out.fs.open_input_file(out.path(rel_path)) as f:
        pf = pq.ParquetFile(f)
        for rg in range(pf.num_row_groups):
            acc.merge(partial_from_table(pf.read_row_group(rg, columns=STATS_COLUMNS), spec))
    return acc


def run_stats(output: str, spec: StatsSpec | None = None, splits: list[str] | None = None, force: bool = False,
              num_cpus: int | None = None) -> StatsResult:
    """Compute (or read back) ``OUT/meta/stats.json`` with Ray Data: one block per shard."""
    t0 = time.perf_counter()
    out, spec, manifest_bytes, key = _open(output, spec, splits)
    if not force and (doc := _cached(out, key)) is not None:
        return StatsResult(doc, True, time.perf_counter() - t0, out.path(STATS), "cache")
    shards = _shards(json.loads(manifest_bytes), splits)

    import ray

    from .ray_compat import configure_data_context, init_ray

    where = init_ray(num_cpus)
    ctx = configure_data_context()
    ctx.execution_options.preserve_order = True  # merge order is fixed, so stats.json is reproducible
    # The shard list comes from the manifest (no file listing); one block per shard keeps the
    # workers evenly loaded, and each task returns one small pickled partial.
    ds = ray.data.from_items([{"path": s["path"]} for s in shards], override_num_blocks=len(shards))
    uri = output

    def partial(batch: pa.Table) -> pa.Table:
        parts = [pickle.dumps(shard_partial(uri, p, spec), protocol=5) for p in batch["path"].to_pylist()]
        return pa.table({"partial": pa.array(parts, pa.binary())})

    parts = ds.map_batches(partial, batch_format="pyarrow", batch_size=1, num_cpus=1)
    acc = StatsAccumulator(spec)
    for row in parts.iter_rows():
        acc.merge(pickle.loads(row["partial"]))
    doc = _finish(out, acc, manifest_bytes, key, splits, shards)
    return StatsResult(doc, False, time.perf_counter() - t0, out.path(STATS), where)


def compute_stats_local(output: str, spec: StatsSpec | None = None, splits: list[str] | None = None,
                        write: bool = False) -> dict:
    """The same statistics in this process, without Ray (the same per-shard partials, merged in
    manifest order): for tests, benchmarks and outputs too small to need a cluster. Ignores the cache."""
    out, spec, manifest_bytes, key = _open(output, spec, splits)
    shards = _shards(json.loads(manifest_bytes), splits)
    acc = StatsAccumulator(spec)
    for s in shards:
        acc.merge(shard_partial(output, s["path"], spec))
    if write:
        return _finish(out, acc, manifest_bytes, key, splits, shards)
    doc = acc.to_json()
    doc.update({"cache_key": key, "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
                "splits": sorted(splits) if splits else None, "shards": len(shards),
                "rows": sum(g["rows"] for g in doc["groups"].values())})
    return doc
