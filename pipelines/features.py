"""``vlaflow features``: encode every frame of a corpus root once with a frozen vision encoder, on the stage runner.

Why: decoding JPEG/MP4 on the training hot path starves GPUs; with a frozen vision tower the features can be
computed once and read back as small vectors. One task per ingest shard reads only the key and camera columns,
decodes the frames *inside* the worker (image bytes, or MP4 references through ``media.FrameReader``), encodes
identical frames (same bytes) once, and writes ``features/<key>/<the shard's relative path>``: the same rows in
the same order and the same row groups (one too large for bounded memory is split into whole episodes, mapped in
the file's metadata), so attaching features to steps is a zip, not a join. On Ray the stage runs as an actor pool
(``PooledStage``): the encoder is loaded once per actor; decoded pixels never leave it. The driver fingerprints
the encoder from its files (``describe_encoder``) and never loads it.

``features/<key>/manifest.json`` records the encoder (id, revision, weights sha256, processor, dtype, pooling),
the source manifest's sha256 and every shard's sha256; a folder from another encoder or another ingest is
refused. ``ledger.json``: frames_in = encoded + deduplicated + failed; ``quarantine.jsonl``: one line per
frame that could not be decoded (its feature is null, its mask false; the run goes on).
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlaflow.schemas import CAMERA_ROLES, Col, InputError
from vlaflow.schemas.names import safe_component

from .corpus import Corpus
from .layout import MANIFEST, features_dir, features_path
from .lock import RunLock
from .runner import PooledStage, ProgressFn, Task, make_executor, run_stage
from .storage import Output

FEATURES_VERSION = 1
SOURCE_COLUMNS = [Col.EPISODE_ID, Col.STEP_INDEX, Col.DATASET, Col.IMAGES, Col.VIDEOS]
METADATA_KEY = b"vlaflow_features"
LEDGER_KEYS = ("frames_in", "encoded", "deduplicated", "failed")


def encoder_key(id_or_path: str) -> str:
    """The folder name of an encoder's features: its id's or folder's last component (``siglip-base-patch16-224``)."""
    return safe_component(id_or_path.rstrip("/").rsplit("/", 1)[-1])


def candidate_roles(schema: pa.Schema) -> list[str]:
    """Camera roles a shard's schema has a column for, in role order; depth maps are measurements, not RGB views,
    and are not encoded. Only those holding at least one frame get feature columns."""
    have = set()
    for col in (Col.IMAGES, Col.VIDEOS):
        if col in schema.names:
            have.update(schema.field(col).type.names)
    return [r for r in CAMERA_ROLES if r in have and not r.startswith("depth_")]


def feature_type(dim: int, dtype: str) -> pa.DataType:
    """float16 as Arrow halffloat; bfloat16 (no Arrow type) as its uint16 bit patterns, named in the metadata."""
    return pa.list_(pa.float16() if dtype == "float16" else pa.uint16(), dim)


def _to_storage(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float16":
        return x.astype(np.float16)
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def to_float32(values: np.ndarray, dtype: str) -> np.ndarray:
    """Stored feature values back to float32 (bfloat16 bit patterns widened exactly)."""
    if dtype == "float16":
        return values.astype(np.float32)
    return (values.astype(np.uint32) << 16).view(np.float32)


SPILL_BYTES = 64 << 20  # per feature kind and task: distinct frames' features held in memory before spilling
OUT_ROW_GROUP_BYTES = 64 << 20  # feature values of one output row group at most (whole episodes; one may exceed)
ROW_GROUPS_KEY = b"vlaflow_features_row_groups"  # source row group -> its output row groups, when split


class _RowStore:
    """Fixed-width rows appended once and read back by position: in memory up to ``limit`` bytes, then in a local
    temporary file. Deduplication across a whole shard needs every distinct frame's features until the shard is
    written; with ``--tokens`` that is 2·k·D bytes a frame (≈ 1 GB for 10,000 frames at k = 64, D = 768), so past
    the limit they live on local disk and a task's memory stays bounded whatever the shard's size."""

    def __init__(self, width: int, dtype, limit: int = SPILL_BYTES):
        self.width, self.dtype, self.limit = width, np.dtype(dtype), limit
        self.row_bytes = width * self.dtype.itemsize
        self.rows: list[np.ndarray] = []
        self.n = 0
        self.file = None
        self.peak_in_memory = 0  # bytes of rows held in memory at most (what the limit bounds)

    def append(self, row: np.ndarray) -> int:
        row = np.ascontiguousarray(row, self.dtype).reshape(self.width)
        if self.file is None and (self.n + 1) * self.row_bytes > self.limit:
            import tempfile

            self.file = tempfile.TemporaryFile(prefix="vlaflow-features-")
            for r in self.rows:
                self.file.write(r.tobytes())
            self.rows = []
        if self.file is not None:
            self.file.write(row.tobytes())
        else:
            self.rows.append(row)
            self.peak_in_memory = max(self.peak_in_memory, len(self.rows) * self.row_bytes)
        self.n += 1
        return self.n - 1

    def gather(self, pos: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """[len(pos), width] with row ``pos[i]`` where ``valid[i]``, zeros elsewhere."""
        values = np.zeros((len(pos), self.width), self.dtype)
        if self.file is not None:
            import os

            self.file.flush()
            fd = self.file.fileno()
            for i in np.flatnonzero(valid):
                values[i] = np.frombuffer(os.pread(fd, self.row_bytes, int(pos[i]) * self.row_bytes), self.dtype)
        else:
            for i in np.flatnonzero(valid):
                values[i] = self.rows[pos[i]]
        return values

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.rows, self.file = [], None


class _ShardEncoder:
    """The frames of one shard through the encoder: dedup by content, batches of ``batch_size``, failures named.
    Distinct frames' features go to row stores (bounded memory); ``index`` maps content to a store row."""

    def __init__(self, encoder, batch_size: int, dtype: str, tokens: int, spill_bytes: int = SPILL_BYTES):
        self.encoder, self.batch_size, self.dtype, self.tokens = encoder, batch_size, dtype, tokens
        self.index: dict[bytes, int] = {}  # content key -> row in the stores
        self.failed_keys: dict[bytes, tuple[str, str]] = {}
        np_dtype = np.float16 if dtype == "float16" else np.uint16
        dim = encoder.info.dim
        self.pooled = _RowStore(dim, np_dtype, spill_bytes)
        self.toks = _RowStore(tokens * dim, np_dtype, spill_bytes) if tokens else None
        self.pending: list[tuple[bytes, np.ndarray]] = []
        self.counts = dict.fromkeys(LEDGER_KEYS, 0)

    def add(self, key: bytes, decode) -> bytes | None:
        """One frame in: returns its key (feature to come) or None (failed); ``decode()`` runs only for new content."""
        self.counts["frames_in"] += 1
        if key in self.failed_keys:
            self.counts["failed"] += 1
            return None
        if key in self.index:
            self.counts["deduplicated"] += 1
            return key
        try:
            rgb = decode()
        except Exception as err:  # noqa: BLE001 - any decoder failure is this frame's, named in the ledger
            self.failed_keys[key] = ("undecodable_image", f"{type(err).__name__}: {str(err)[:200]}")
            self.counts["failed"] += 1
            return None
        self.index[key] = -1  # pending
        self.pending.append((key, rgb))
        self.counts["encoded"] += 1
        if len(self.pending) >= self.batch_size:
            self.flush()
        return key

    def flush(self) -> None:
        if not self.pending:
            return
        pooled, toks = self.encoder.encode([rgb for _, rgb in self.pending])
        for i, (key, _) in enumerate(self.pending):
            self.index[key] = self.pooled.append(_to_storage(pooled[i], self.dtype))
            if self.tokens:
                self.toks.append(_to_storage(toks[i].reshape(-1), self.dtype))
        self.pending = []

    def close(self) -> None:
        self.pooled.close()
        if self.toks is not None:
            self.toks.close()


def _content_key(kind: bytes, data) -> bytes:
    return kind + hashlib.sha256(data).digest()


def encode_shard(root_uri: str, shard_rel: str, out_rel: str, encoder, batch_size: int, dtype: str, tokens: int,
                 progress: ProgressFn | None = None, declared: tuple = (), spill_bytes: int | None = None,
                 row_group_bytes: int | None = None) -> dict:
    """Features of one shard written whole (temp name, then rename) to ``out_rel``; returns its marker. Columns for
    every role holding a frame in the shard and every role its dataset declares (``declared``: the same columns in
    every shard of a dataset, all-masked where a shard has no frame for one).

    Memory: one source row group and one batch of decoded frames at a time, the shard's dedup map (content key ->
    row), and the distinct frames' features up to ``spill_bytes`` per kind (then on local disk); the output is
    streamed row group by row group to ``<out_rel>.tmp``, hashed while written. The bytes do not depend on
    ``spill_bytes``. Output row groups are the source's, except that one whose feature values would exceed
    ``row_group_bytes`` (many steps stored as MP4 references, with ``--tokens``) is written as several, each of
    whole episodes, mapped in the file's metadata (``ROW_GROUPS_KEY``; ``FeatureReader`` follows it)."""
    enc = _ShardEncoder(encoder, batch_size, dtype, tokens, SPILL_BYTES if spill_bytes is None else spill_bytes)
    try:
        return _encode_shard(root_uri, shard_rel, out_rel, enc, progress, declared,
                             OUT_ROW_GROUP_BYTES if row_group_bytes is None else row_group_bytes)
    finally:
        enc.close()


def _encode_shard(root_uri: str, shard_rel: str, out_rel: str, enc: _ShardEncoder, progress, declared,
                  row_group_bytes: int) -> dict:
    from vlaflow.media import FrameReader, decode_rgb

    from .storage import HashingWriter

    out = Output(root_uri)
    dim, dtype, tokens = enc.encoder.info.dim, enc.dtype, enc.tokens
    failures: list[dict] = []
    reader = None
    with out.fs.open_input_file(out.path(shard_rel)) as f:
        pf = pq.ParquetFile(f)
        schema = pf.schema_arrow
        roles = candidate_roles(schema)
        cols = [c for c in SOURCE_COLUMNS if c in schema.names]
        seen: set[str] = set()
        groups = []  # per row group: (episode ids, steps, {role: content keys})
        rows = 0
        for rg in range(pf.num_row_groups):
            t = pf.read_row_group(rg, columns=cols)
            n = t.num_rows
            eps = t[Col.EPISODE_ID].cast(pa.string()).to_pylist()
            steps = t[Col.STEP_INDEX].to_pylist()
            keys: dict[str, list] = {}
            for role in roles:
                row_keys: list = [None] * n
                imgs = _role_values(t, Col.IMAGES, role, "bytes", n)
                vids = _role_values(t, Col.VIDEOS, role, None, n)
                by_file: dict[str, list[tuple[int, int]]] = {}
                for i in range(n):
                    b = imgs[i]
                    if b is not None or (vids[i] and vids[i].get("path")):
                        seen.add(role)
                    if b is not None:
                        row_keys[i] = enc.add(_content_key(b"i", b), lambda b=b: decode_rgb(b, "images"))
                        if row_keys[i] is None:
                            failures.append(_failure(enc, _content_key(b"i", b), eps[i], steps[i], role, shard_rel))
                    elif vids[i] and vids[i].get("path"):
                        by_file.setdefault(vids[i]["path"], []).append((i, int(vids[i]["frame_index"])))
                for path, items in by_file.items():
                    reader = reader or FrameReader(root_uri)
                    try:
                        frames = reader.read(path, [fi for _, fi in items])
                        error = None
                    except Exception as err:  # noqa: BLE001 - the video's frames fail, named; the run goes on
                        frames, error = [None] * len(items), f"{type(err).__name__}: {str(err)[:200]}"
                    for (i, fi), rgb in zip(items, frames):
                        if rgb is None:
                            enc.counts["frames_in"] += 1
                            enc.counts["failed"] += 1
                            failures.append({"episode_id": eps[i], "step_index": steps[i], "role": role,
                                             "reason": "undecodable_video", "message": f"{path}#{fi}: {error}",
                                             "shard": shard_rel})
                            continue
                        key = _content_key(b"v" + np.asarray(rgb.shape, np.int64).tobytes(), np.ascontiguousarray(rgb))
                        row_keys[i] = enc.add(key, lambda rgb=rgb: rgb)
                keys[role] = row_keys
            groups.append((eps, steps, keys))
            if progress:
                progress(0, n)
        enc.flush()
        roles = [r for r in roles if r in seen or r in declared]
        fields = [pa.field(Col.EPISODE_ID, pa.string()), pa.field(Col.STEP_INDEX, pa.int32())]
        for r in roles:
            fields.append(pa.field(r, feature_type(dim, dtype)))
            if tokens:
                fields.append(pa.field(f"{r}_tokens", feature_type(tokens * dim, dtype)))
            fields.append(pa.field(f"{r}_mask", pa.bool_()))
        meta = {"features_version": FEATURES_VERSION, "encoder": enc.encoder.info.id, "dim": dim, "tokens": tokens,
                "dtype": dtype, "roles": roles, "source_shard": shard_rel}
        out_schema = pa.schema(fields, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
        out.makedirs(posixpath.dirname(out_rel))
        tmp = out.path(out_rel) + ".tmp"
        sink = HashingWriter(out.fs.open_output_stream(tmp))
        try:
            writer = pq.ParquetWriter(sink.as_arrow(), out_schema, compression="zstd", write_statistics=False)
            rows = 0
            row_bytes = max(1, len(roles) * dim * (1 + tokens) * 2)
            mapping: list[list[int]] = []
            for eps, steps, keys in groups:  # a row group per source row group (an episode is in one in both)
                parts = _split_episodes(eps, max(1, row_group_bytes // row_bytes))
                mapping.append(list(range(sum(map(len, mapping)), sum(map(len, mapping)) + len(parts))))
                for a, b in parts:
                    arrays = [pa.array(eps[a:b], pa.string()), pa.array(steps[a:b], pa.int32())]
                    for role in roles:
                        pos = np.asarray([-1 if k is None else enc.index[k] for k in keys[role][a:b]], np.int64)
                        valid = pos >= 0
                        arrays.append(_fixed(enc.pooled, pos, valid))
                        if tokens:
                            arrays.append(_fixed(enc.toks, pos, valid))
                        arrays.append(pa.array(valid, pa.bool_()))
                    writer.write_table(pa.Table.from_arrays(arrays, schema=out_schema))
                    rows += b - a
                    del arrays
            if len(mapping) != sum(map(len, mapping)):  # only then: an unsplit file keeps its bytes
                writer.add_key_value_metadata({ROW_GROUPS_KEY: json.dumps(mapping).encode()})
            writer.close()
            sink.close()
        except BaseException:
            sink.close()
            out.fs.delete_file(tmp)
            raise
        out.fs.move(tmp, out.path(out_rel))
    if reader is not None:
        reader.close()
    return {"shard": shard_rel, "path": out_rel, "sha256": sink.hexdigest, "bytes": sink.nbytes,
            "rows": rows, "roles": roles, "ledger": enc.counts, "failures": failures}


def _split_episodes(eps: list, max_rows: int) -> list[tuple[int, int]]:
    """[start, stop) slices of whole episodes (runs of one episode id), as few as keep each at most ``max_rows``
    rows (a longer episode alone)."""
    runs, start = [], 0
    for i in range(1, len(eps) + 1):
        if i == len(eps) or eps[i] != eps[start]:
            runs.append((start, i))
            start = i
    parts: list[tuple[int, int]] = []
    for a, b in runs:
        if parts and b - parts[-1][0] <= max_rows:
            parts[-1] = (parts[-1][0], b)
        else:
            parts.append((a, b))
    return parts or [(0, 0)]


def _failure(enc: _ShardEncoder, key: bytes, ep, step, role: str, shard: str) -> dict:
    reason, message = enc.failed_keys[key]
    return {"episode_id": ep, "step_index": step, "role": role, "reason": reason, "message": message, "shard": shard}


def _role_values(t: pa.Table, col: str, role: str, sub: str | None, n: int) -> list:
    if col not in t.schema.names or role not in t.schema.field(col).type.names:
        return [None] * n
    arr = t[col].combine_chunks().field(role)
    return arr.field(sub).to_pylist() if sub else arr.to_pylist()


def _fixed(store: _RowStore, pos: np.ndarray, valid: np.ndarray) -> pa.Array:
    values = store.gather(pos, valid)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), store.width, mask=pa.array(~valid))


@dataclass
class FeaturesStage(PooledStage):
    """One task per ingest shard of the root; the encoder is loaded once per worker (``load_worker``)."""

    output_uri: str  # the corpus root: features go to features/<key>/ inside it
    key: str
    encoder: str
    tokens: int
    dtype: str
    batch_size: int
    shards: list[str]
    fingerprint: dict  # the driver's EncoderInfo.fingerprint(): a worker that loads something else refuses
    declared: list = field(default_factory=list)  # per shard: the camera roles its dataset declares
    device: str = "cpu"
    pool_size: int | None = None
    num_cpus_per_worker: float = 1
    num_gpus_per_worker: float = 0
    name: str = "features"

    def work_dir(self) -> str:
        return posixpath.join(features_dir(self.key), "_work")

    def tasks(self) -> list[Task]:
        return [Task(i, posixpath.join(self.work_dir(), f"shard-{i:06d}.json")) for i in range(len(self.shards))]

    def is_done(self, out: Output, task: Task) -> bool:
        return out.exists(task.marker) and out.exists(features_path(self.key, self.shards[task.id]))

    def load_worker(self):
        from vlaflow.models import load_vision_encoder

        enc = load_vision_encoder(self.encoder, tokens=self.tokens, dtype=self.dtype, device=self.device)
        if enc.info.fingerprint() != self.fingerprint:
            raise InputError(f"encoder {self.encoder}: a worker loaded different weights or settings than the "
                             "driver (is the model folder the same on every node?)")
        return enc

    def run_pooled(self, worker, task: Task, progress: ProgressFn) -> dict:
        shard = self.shards[task.id]
        return encode_shard(self.output_uri, shard, features_path(self.key, shard), worker, self.batch_size,
                            self.dtype, self.tokens, progress,
                            tuple(self.declared[task.id]) if self.declared else ())


@dataclass
class FeaturesResult:
    manifest: dict
    ledger: dict
    shards_total: int
    shards_skipped: int
    seconds: float
    where: str
    path: str
    failures: list = field(default_factory=list)


def _plan(root_sha: str, info) -> dict:
    return {"features_version": FEATURES_VERSION, "source_manifest_sha256": root_sha, "encoder": info.fingerprint()}


def _check_folder(out: Output, key: str, plan: dict, encoder: str) -> None:
    """A features folder holds one encoder's output for one version of the corpus, never a mix."""
    fdir = features_dir(key)
    for rel in (posixpath.join(fdir, "_work", "plan.json"), posixpath.join(fdir, "manifest.json")):
        if not out.exists(rel):
            continue
        doc = out.read_json(rel)
        old = {"features_version": doc.get("features_version"), "source_manifest_sha256":
               doc.get("source_manifest_sha256"), "encoder": doc.get("encoder_fingerprint", doc.get("encoder"))}
        if old["encoder"] != plan["encoder"]:
            e = old["encoder"] or {}
            was = f"{doc.get('encoder_id', e.get('model_class', '?'))}, tokens={e.get('tokens')}, dtype={e.get('dtype')}"
            raise InputError(f"{out.uri}/{fdir} holds features of another encoder or settings ({was}); "
                             f"{encoder} with these settings would mix them: delete the folder or pass --key NAME")
        if old != plan:
            raise InputError(f"{out.uri}/{fdir} was computed for another version of this corpus "
                             f"(source manifest {str(old['source_manifest_sha256'])[:12]}…, now "
                             f"{plan['source_manifest_sha256'][:12]}…); delete the folder to recompute")
        return


def run_features(root: str, encoder: str, tokens: int = 0, batch_size: int = 32, dtype: str = "float16",
                 executor: str = "ray", num_gpus: float = 0, num_cpus: int | None = None, key: str | None = None,
                 pool_size: int | None = None, on_progress=None) -> FeaturesResult:
    """Features of every shard of a corpus root (resumable; a rerun skips finished shards, byte-identical)."""
    from vlaflow.models import describe_encoder

    t0 = time.perf_counter()
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    if root.endswith((".yaml", ".yml")):
        raise InputError(f"{root}: features are written into one corpus root; run it on each root of the YAML")
    corpus = Corpus.open(root)
    croot = corpus.roots[0]
    out = croot.out
    manifest_bytes = out.read_bytes(MANIFEST)
    root_sha = hashlib.sha256(manifest_bytes).hexdigest()
    entries = croot.manifest.shard_entries()
    if not entries:
        raise InputError(f"{root}: the corpus has no shards")
    device = "cuda" if num_gpus else "cpu"
    if num_gpus and executor == "local":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--num-gpus with --executor local, but torch sees no CUDA device in this process")
    # the fingerprint and every one-line error from the files alone (config, processor, weight sha256s): the
    # driver never loads the model; each worker loads it and checks it has the same fingerprint
    info = describe_encoder(encoder, tokens=tokens, dtype=dtype, device=device)
    key = safe_component(key) if key else encoder_key(encoder)
    plan = _plan(root_sha, info)
    with RunLock(croot.uri, f"vlaflow features --encoder {encoder}"):  # one writer of the root at a time
        _check_folder(out, key, plan, encoder)
        plan_rel = posixpath.join(features_dir(key), "_work", "plan.json")
        if not out.exists(plan_rel):
            out.write_json(plan_rel, {**plan, "encoder_id": encoder})
        cams = {n: sorted((d.get("cameras") or {})) for n, d in croot.manifest.datasets.items()}
        stage = FeaturesStage(croot.uri, key, encoder, tokens, dtype, batch_size, [s.path for s in entries],
                              info.fingerprint(), [cams.get(s.dataset, []) for s in entries], device, pool_size, 1,
                              num_gpus)
        ex = make_executor(executor, num_cpus)
        skipped = len(stage.tasks()) - len(_pending(stage))
        markers = run_stage(stage, ex, on_progress)
        led = dict.fromkeys(LEDGER_KEYS, 0)
        failures, shards = [], []
        for e, m in zip(entries, markers):
            for k in LEDGER_KEYS:
                led[k] += m["ledger"][k]
            failures.extend(m["failures"])
            shards.append({"source": e.path, "source_sha256": e.sha256, "dataset": e.dataset, "split": e.split,
                           "path": m["path"], "sha256": m["sha256"], "bytes": m["bytes"], "rows": m["rows"],
                           "roles": m["roles"], "ledger": m["ledger"]})
        led["balanced"] = led["frames_in"] == led["encoded"] + led["deduplicated"] + led["failed"]
        fdir = features_dir(key)
        by_reason: dict[str, int] = {}
        for f in failures:
            by_reason[f["reason"]] = by_reason.get(f["reason"], 0) + 1
        led["by_reason"] = dict(sorted(by_reason.items()))
        out.write_json(posixpath.join(fdir, "ledger.json"), led)
        out.write_bytes(posixpath.join(fdir, "quarantine.jsonl"),
                        b"".join((json.dumps(f, sort_keys=True) + "\n").encode() for f in failures))
        enc_json = info.to_json()
        enc_json["extra"] = {k: v for k, v in enc_json["extra"].items() if k != "folder"}  # machine-specific
        doc = {"features_version": FEATURES_VERSION, "key": key, "encoder_id": encoder, "encoder": enc_json,
               "encoder_fingerprint": info.fingerprint(), "dim": info.dim, "tokens": tokens, "dtype": dtype,
               "pooling": info.pooling, "revision": info.revision, "weights_sha256": info.weights_sha256,
               "processor": info.processor, "source_manifest_sha256": root_sha, "shards": shards,
               "ledger": "ledger.json", "quarantine": "quarantine.jsonl",
               "totals": {"shards": len(shards), "rows": sum(s["rows"] for s in shards),
                          "bytes": sum(s["bytes"] for s in shards)}}
        out.write_json(posixpath.join(fdir, "manifest.json"), doc)  # last: the folder is complete
        return FeaturesResult(doc, led, len(shards), skipped, time.perf_counter() - t0,
                              ex.where or "nothing (every shard was done)", out.path(fdir), failures)


def _pending(stage: FeaturesStage) -> list[Task]:
    from .runner import pending

    return pending(stage)


class FeatureReader:
    """Attaches features to step rows for training without touching image bytes: a shard's or an episode's rows
    zipped with the same rows of ``features/<key>/`` (episode_id and step_index checked equal, and the source
    shard's sha256 in the corpus equal to the one the features were computed from). ``verify=True`` also hashes
    each shard and features file once (catches a file rewritten behind the manifests)."""

    PREFIX = "features."

    def __init__(self, root: str, encoder_key: str, verify: bool = False):
        self.verify, self._verified = verify, set()
        self.corpus = Corpus.open(root)
        self.out = self.corpus.roots[0].out
        self.key = safe_component(encoder_key)
        rel = posixpath.join(features_dir(self.key), "manifest.json")
        if not self.out.exists(rel):
            raise InputError(f"{root}: no finished features for {encoder_key!r} ({rel} absent); run `vlaflow features`")
        self.manifest = self.out.read_json(rel)
        self.dim, self.tokens, self.dtype = self.manifest["dim"], self.manifest["tokens"], self.manifest["dtype"]
        self._by_source = {s["source"]: s for s in self.manifest["shards"]}
        self._source_sha = {s.path: s.sha256 for s in self.corpus.roots[0].manifest.shard_entries()}

    def _entry(self, shard_rel: str) -> dict:
        ent = self._by_source.get(shard_rel)
        if ent is None:
            raise InputError(f"shard {shard_rel}: no features for it under {features_dir(self.key)}")
        if self._source_sha.get(shard_rel) != ent["source_sha256"]:
            raise InputError(f"shard {shard_rel}: it changed since its features were computed (sha256 differs); "
                             "recompute the features")
        if self.verify and shard_rel not in self._verified:
            for rel, want in ((shard_rel, ent["source_sha256"]), (ent["path"], ent["sha256"])):
                if self.out.sha256(rel) != want:
                    raise InputError(f"{rel}: its sha256 differs from the manifest's; it changed since its features "
                                     "were computed")
            self._verified.add(shard_rel)
        return ent

    def _zip(self, steps: pa.Table, feats: pa.Table, where: str) -> pa.Table:
        if steps.num_rows != feats.num_rows or \
                steps[Col.EPISODE_ID].cast(pa.string()).to_pylist() != feats[Col.EPISODE_ID].to_pylist() or \
                steps[Col.STEP_INDEX].to_pylist() != feats[Col.STEP_INDEX].to_pylist():
            raise InputError(f"{where}: features rows do not match the step rows (episode_id/step_index)")
        for name in feats.schema.names[2:]:
            steps = steps.append_column(self.PREFIX + name, feats[name])
        return steps

    def _columns(self, columns):
        if columns is None:
            return None
        return list(dict.fromkeys([Col.EPISODE_ID, Col.STEP_INDEX, *columns]))

    def shard(self, shard_rel: str, columns: list[str] | None = None) -> pa.Table:
        """A shard's step rows (default: every column but the frames) with ``features.<role>[_tokens|_mask]``."""
        ent = self._entry(shard_rel)
        src = pq.ParquetFile(self.out.path(shard_rel), filesystem=self.out.fs)
        cols = self._columns(columns) or [n for n in src.schema_arrow.names if n not in (Col.IMAGES, Col.VIDEOS)]
        steps = src.read(columns=cols)
        feats = pq.read_table(self.out.path(ent["path"]), filesystem=self.out.fs)
        return self._zip(steps, feats, shard_rel)

    def episode(self, episode_id: str, columns: list[str] | None = None) -> pa.Table:
        """An episode's step rows with its features: one row group of the shard and the same of the features."""
        import pyarrow.compute as pc

        from vlaflow.schemas import EpCol

        row, _ = self.corpus._locate(episode_id)
        ent = self._entry(row[EpCol.SHARD_FILE])
        cols = self._columns(columns)
        if cols is None:
            schema = pq.read_schema(self.out.path(row[EpCol.SHARD_FILE]), filesystem=self.out.fs)
            cols = [n for n in schema.names if n not in (Col.IMAGES, Col.VIDEOS)]
        steps = self.corpus.read_episode(episode_id, columns=cols)
        with self.out.fs.open_input_file(self.out.path(ent["path"])) as f:
            pf = pq.ParquetFile(f)
            split = (pf.metadata.metadata or {}).get(ROW_GROUPS_KEY)
            rg = row[EpCol.ROW_GROUP]
            ft = pf.read_row_groups(json.loads(split)[rg]) if split else pf.read_row_group(rg)
        ft = ft.filter(pc.equal(ft[Col.EPISODE_ID], episode_id))
        return self._zip(steps, ft, episode_id)

    def arrays(self, table: pa.Table, role: str, tokens: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(float32 [N, D] or [N, k, D], mask [N]) of one role from an attached table (zeros where masked)."""
        name = self.PREFIX + role + ("_tokens" if tokens else "")
        width = self.dim * (self.tokens if tokens else 1)
        col = table[name].combine_chunks()
        mask = table[self.PREFIX + role + "_mask"].to_numpy(zero_copy_only=False)
        vals = col.values.slice(col.offset * width, len(col) * width)  # null slots included, zeroed below
        out = to_float32(vals.to_numpy(zero_copy_only=False), self.dtype).reshape(len(col), width)
        out[~mask] = 0
        return (out.reshape(len(col), self.tokens, self.dim) if tokens else out), mask
