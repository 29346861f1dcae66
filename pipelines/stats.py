"""``vlaflow stats``: normalization statistics of a corpus (a root or a corpus YAML), on the stage runner.

One task per shard reads only the columns statistics need (``STATS_COLUMNS``: no images, no raw
vectors, no text; ``vision_language`` rows, which have no action or state, are skipped) row group by row group and writes one mergeable partial (per (dataset, embodiment):
moments + a KLL sketch per value, serialized without pickle) before its marker; the driver merges the
partials in manifest order, so the document is the same on Ray, in this process, and after a resume.
A root gets ``OUT/meta/stats.json`` (docs/stats.md) plus ``OUT/meta/stats/partials.bin``, the merged
partials, so the per-embodiment view merges across datasets and two corpora's statistics merge later
without re-reading data. The document is keyed by the sha256 of the root's ``meta/manifest.json``
(which holds every shard's sha256), the stats spec and the splits: a second run with the same key reads
it back without starting anything. A corpus YAML merges its roots' partials (computing those that are
missing or stale) and writes the document beside the YAML.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from vlaflow.schemas import ACTION, STATE, VISION_LANGUAGE, Col, InputError
from vlaflow.schemas.arrow import fixed_to_numpy, strings_to_numpy, trajectory_to_numpy
from vlaflow.tokenization.statistics.accumulator import StatsAccumulator
from vlaflow.tokenization.statistics.spec import STATS_VERSION, StatsSpec

from .corpus import Corpus, CorpusRoot
from .layout import MANIFEST, STATS, STATS_PARTIALS
from .lock import RunLock
from .metadata import JsonRecord
from .runner import ProgressFn, Stage, Task, make_executor, run_stage
from .storage import Output

PARTIALS = posixpath.join(STATS_PARTIALS, "partials.bin")
STATS_COLUMNS = [Col.DATASET, Col.EMBODIMENT, Col.TASK_FAMILY, Col.IS_FIRST, Col.ACTION, Col.ACTION_MASK, Col.ACTION_VALID,
                 Col.STATE, Col.STATE_MASK, Col.TRAJECTORY, Col.TRAJECTORY_MASK]


def partial_from_table(table: pa.Table, spec: StatsSpec, seed: int | None = None) -> StatsAccumulator:
    """Statistics of one Arrow table/batch of step rows (only ``STATS_COLUMNS`` are touched).

    The sketches' compaction seed defaults to a checksum of the block's actions, so partials of
    different blocks use independent random offsets (their errors cancel rather than add) and the
    same block always gives the same partial. ``vision_language`` rows are dropped first: no action, no
    state, no body, so no (dataset, embodiment) entry either.
    """
    if Col.TASK_FAMILY in table.column_names and table.num_rows:
        vl = strings_to_numpy(table[Col.TASK_FAMILY]) == VISION_LANGUAGE
        if vl.any():
            table = table.filter(pa.array(~vl))
    action = fixed_to_numpy(table[Col.ACTION], ACTION.width, np.float32) if table.num_rows else None
    if seed is None:
        seed = zlib.crc32(action[:64].tobytes()) ^ table.num_rows if action is not None else 0
    acc = StatsAccumulator(spec, seed)
    if table.num_rows == 0:
        return acc
    acc.update_rows(
        strings_to_numpy(table[Col.DATASET]), strings_to_numpy(table[Col.EMBODIMENT]),
        action=action,
        action_mask=fixed_to_numpy(table[Col.ACTION_MASK], ACTION.width, bool),
        action_valid=table[Col.ACTION_VALID].to_numpy(zero_copy_only=False),
        state=fixed_to_numpy(table[Col.STATE], STATE.width, np.float32),
        state_mask=fixed_to_numpy(table[Col.STATE_MASK], STATE.width, bool),
        is_first=table[Col.IS_FIRST].to_numpy(zero_copy_only=False),
        **dict(zip(("trajectory", "trajectory_mask"), trajectory_to_numpy(table))))
    return acc


def cache_key(manifest_bytes: bytes, spec: StatsSpec, splits: list[str] | None) -> str:
    h = hashlib.sha256()
    h.update(hashlib.sha256(manifest_bytes).digest())
    h.update(json.dumps({"stats_version": STATS_VERSION, "spec": spec.to_json(),
                         "splits": sorted(splits) if splits else None}, sort_keys=True).encode())
    return h.hexdigest()


@dataclass
class StatsDocument(JsonRecord):
    """``stats.json``: the accumulator's rendering (docs/stats.md) and what it was computed from."""

    stats_version: int
    schema_version: str
    spec: dict
    quantile_keys: list
    groups: dict  # "dataset/embodiment" -> statistics
    embodiments: dict  # embodiment -> statistics merged across its datasets
    cache_key: str = ""
    manifest_sha256: str = ""
    splits: list | None = None
    shards: int = 0
    rows: int = 0
    roots: list = field(default_factory=list)  # corpus YAML only: the roots merged
    partials_sha256: str = ""  # of the merged partials saved beside this document

    @classmethod
    def of(cls, acc: StatsAccumulator, **kw) -> "StatsDocument":
        doc = acc.to_json()
        return cls(**doc, rows=sum(g["rows"] for g in doc["groups"].values()), **kw)


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


@dataclass
class StatsStage(Stage):
    """One task per shard of ``source_uri``; its partial is written whole under ``output_uri``, then its marker."""

    output_uri: str  # where partials and markers go: the root itself, or a work folder beside a corpus YAML
    source_uri: str  # the root the shards are read from
    shards: list[str]
    spec: StatsSpec
    key: str
    name: str = "stats"

    def work_dir(self) -> str:
        return posixpath.join(STATS_PARTIALS, "_work", self.key[:16])

    def tasks(self) -> list[Task]:
        return [Task(i, posixpath.join(self.work_dir(), f"shard-{i:06d}.json")) for i in range(len(self.shards))]

    def is_done(self, out: Output, task: Task) -> bool:
        return out.exists(task.marker) and out.exists(out.read_json(task.marker)["partial"])

    def run_task(self, task: Task, progress: ProgressFn) -> dict:
        acc = shard_partial(self.source_uri, self.shards[task.id], self.spec)
        rel = posixpath.join(self.work_dir(), f"shard-{task.id:06d}.bin")
        Output(self.output_uri).write_bytes(rel, acc.to_bytes())
        rows = sum(g.rows for g in acc.groups.values())
        progress(0, rows)
        return {"shard": self.shards[task.id], "partial": rel, "rows": rows}

    def merged(self, executor, on_progress=None) -> StatsAccumulator:
        """Run what is pending; the partials merged in shard order (the same document on every executor)."""
        out = Output(self.output_uri)
        acc = StatsAccumulator(self.spec)
        for m in run_stage(self, executor, on_progress):
            acc.merge(StatsAccumulator.from_bytes(out.read_bytes(m["partial"]), self.spec, m["partial"]))
        return acc


@dataclass
class StatsResult:
    stats: dict
    cached: bool
    seconds: float
    path: str
    ray: str = ""


def _cached(out: Output, rel: str, key: str) -> dict | None:
    if not out.exists(rel):
        return None
    try:
        doc = out.read_json(rel)
    except (ValueError, OSError):
        return None
    return doc if doc.get("cache_key") == key else None


def _selected_shards(root: CorpusRoot, splits) -> list[str]:
    shards = [s.path for s in root.manifest.shard_entries()
              if s.dataset in root.datasets and (not splits or s.split in splits)]
    if not shards:
        raise InputError(f"{root.uri}: no shards to compute statistics over" + (f" in splits {splits}" if splits else ""))
    return shards


def current_partials(root: CorpusRoot, spec: StatsSpec, splits) -> tuple[StatsAccumulator, dict] | None:
    """A root's saved partials and document when they are current for (manifest, spec, splits); read only."""
    out = root.out
    doc = _cached(out, STATS, cache_key(out.read_bytes(MANIFEST), spec, splits))
    if doc is None or not out.exists(PARTIALS):
        return None
    raw = out.read_bytes(PARTIALS)
    if hashlib.sha256(raw).hexdigest() != doc.get("partials_sha256"):
        return None  # partials of another run (e.g. one that stopped before writing its document)
    return StatsAccumulator.from_bytes(raw, spec, f"{root.uri}/{PARTIALS}"), doc


def root_stats(root: CorpusRoot, spec: StatsSpec, splits, executor, force: bool = False,
               on_progress=None) -> tuple[dict, bool]:
    """``OUT/meta/stats.json`` and the partials beside it: read back when current, else computed into the root."""
    if not force and (hit := current_partials(root, spec, splits)) is not None:
        return hit[1], True
    with RunLock(root.uri, "vlaflow stats"):
        return _compute_root(root, spec, splits, executor, on_progress), False


def _compute_root(root: CorpusRoot, spec: StatsSpec, splits, executor, on_progress) -> dict:
    out = root.out
    manifest_bytes = out.read_bytes(MANIFEST)
    key = cache_key(manifest_bytes, spec, splits)
    shards = _selected_shards(root, splits)
    stage = StatsStage(root.uri, root.uri, shards, spec, key)
    acc = stage.merged(executor, on_progress)
    raw = acc.to_bytes()
    out.write_bytes(PARTIALS, raw)
    doc = StatsDocument.of(acc, cache_key=key, manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
                           splits=sorted(splits) if splits else None, shards=len(shards),
                           partials_sha256=hashlib.sha256(raw).hexdigest()).to_json()
    out.write_json(STATS, doc)  # last: the document is current
    _delete_tree(out, posixpath.dirname(stage.work_dir()))
    return doc


def _delete_tree(out: Output, rel: str) -> None:
    try:
        out.fs.delete_dir(out.path(rel))
    except OSError:  # best effort: a leftover work folder costs space, not correctness
        pass


def corpus_stats(corpus: Corpus, path: str, spec: StatsSpec, splits, executor, force: bool = False,
                 on_progress=None) -> tuple[dict, str, bool]:
    """A corpus YAML's statistics, written beside it (``mix.stats.json`` + ``mix.stats.partials.bin``). Its roots
    are only read: a root's saved partials are reused when current, else its selected shards are computed into
    a work folder beside the YAML. Groups of datasets the YAML leaves out are dropped before merging."""
    stem = path.rsplit(".", 1)[0]
    dest = Output(posixpath.dirname(stem) or ".")
    name = posixpath.basename(stem)
    keys = [{"root": r.uri, "datasets": r.datasets, "cache_key": cache_key(r.out.read_bytes(MANIFEST), spec, splits)}
            for r in corpus.roots]
    key = hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()
    if not force and (doc := _cached(dest, f"{name}.stats.json", key)) is not None:
        return doc, dest.path(f"{name}.stats.json"), True
    merged, shards = StatsAccumulator(spec), 0
    for i, (root, k) in enumerate(zip(corpus.roots, keys)):
        hit = None if force else current_partials(root, spec, splits)
        if hit is not None:
            acc = hit[0]
            shards += len(_selected_shards(root, splits))
        else:
            selected = _selected_shards(root, splits)
            work = f"{dest.uri.rstrip('/')}/{name}.stats-work/root-{i}"
            acc = StatsStage(work, root.uri, selected, spec, k["cache_key"]).merged(executor, on_progress)
            shards += len(selected)
        for gkey, g in sorted(acc.groups.items()):
            if g.dataset in root.datasets:
                merged.merge(StatsAccumulator(spec, groups={gkey: g}))
    raw = merged.to_bytes()
    dest.write_bytes(f"{name}.stats.partials.bin", raw)
    doc = StatsDocument.of(merged, cache_key=key, splits=sorted(splits) if splits else None, roots=keys, shards=shards,
                           partials_sha256=hashlib.sha256(raw).hexdigest()).to_json()
    dest.write_json(f"{name}.stats.json", doc)
    _delete_tree(dest, f"{name}.stats-work")
    return doc, dest.path(f"{name}.stats.json"), False


def run_stats(path: str, spec: StatsSpec | None = None, splits: list[str] | None = None, force: bool = False,
              num_cpus: int | None = None, executor: str = "ray", on_progress=None) -> StatsResult:
    """Compute (or read back) the statistics of a corpus root (``OUT/meta/stats.json``) or of a corpus YAML
    (``<corpus>.stats.json`` beside it, merged from its roots' partials)."""
    t0 = time.perf_counter()
    spec = spec or StatsSpec()
    corpus = Corpus.open(path)
    ex = make_executor(executor, num_cpus, sum(sh.bytes for _, sh in corpus.shards()))
    if len(corpus.roots) == 1 and corpus.roots[0].uri == path:
        root = corpus.roots[0]
        doc, cached = root_stats(root, spec, splits, ex, force, on_progress)
        dest = root.out.path(STATS)
    else:
        doc, dest, cached = corpus_stats(corpus, path, spec, splits, ex, force, on_progress)
    return StatsResult(doc, cached, time.perf_counter() - t0, dest,
                       "cache" if cached else ex.where or "the roots' saved partials")
