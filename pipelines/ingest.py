"""``vlaflow ingest``: plan → one task per group (convert, validate, quarantine, write a shard) → finalize.

One ingest converts one dataset into a corpus root (``meta/datasets/<name>/`` holds its own manifest,
ledger, quarantine, episodes table, the specs it resolved, and its resume state); several ingests share a
root. The group tasks run on the stage runner (``runner.py``) with Ray or in this process; this module
knows no Ray. Resume: a group whose marker exists and whose shard matches it is skipped, and finalize
rebuilds the dataset's files from the markers alone, so a resumed run writes the same bytes as an
uninterrupted one, whichever executor ran it.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import yaml

from vlaflow.converters import Converter, ConverterOptions, Rejected
from vlaflow.converters import load as load_converter
from vlaflow.converters import sniff as sniff_converter
from vlaflow.media import FrameStorage
from vlaflow.schemas import (SCHEMA_VERSION, ConverterError, Episode, EpisodeError, InputError, VlaflowError, episode_row,
                             episodes_table, episodes_to_table, schema_metadata, step_schema, validate_episode)
from vlaflow.schemas.invariants import check_step_table
from vlaflow.schemas.raw import raw_table

from .corpus import parquet_bytes, rebuild_root
from .layout import (BATCH_BYTES, BATCH_EPISODES, DEFAULT_TARGET_SHARD_MB, EPISODES, LEDGER, MANIFEST,
                     MIN_SHARD_BYTES, PLAN_MIN_SHARDS, QUARANTINE, dataset_file, embodiment_file, group_marker,
                     plan_marker, spec_file)
from .metadata import DatasetManifest, GroupMarker, Ledger
from .groups import Group, pack
from .lock import RunLock
from .runner import ProgressFn, Stage, Task, make_executor, run_stage
from .shard_writer import ShardWriter
from .storage import Output


@dataclass
class IngestConfig:
    converter: str
    input: str
    output: str
    options: ConverterOptions = field(default_factory=ConverterOptions)
    target_shard_mb: float = DEFAULT_TARGET_SHARD_MB
    num_cpus: int | None = None
    verify_images: bool = False
    executor: str = "ray"  # or "local": the same bytes, in this process


@dataclass
class IngestResult:
    ledger: dict
    manifest: dict  # the dataset's own manifest
    groups_total: int
    groups_skipped: int
    seconds: float
    warnings: list[str]
    ray: str = ""  # where the work ran

    @property
    def clean(self) -> bool:
        return self.ledger["episodes_quarantined"] == 0


_CONVERTERS: dict[tuple, Converter] = {}


def open_converter(name: str, input_path: str, options: ConverterOptions) -> Converter:
    """A fresh converter on the input as it is now; it also serves this process's tasks (``converter_for``)."""
    cls = load_converter(name)
    try:
        conv = cls(input_path, options)
    except VlaflowError:
        raise
    except Exception as err:  # an input the converter never expected: one line, not a traceback
        raise InputError(f"converter {name} cannot open {input_path}: {type(err).__name__}: "
                         f"{str(err).splitlines()[0][:300] if str(err) else ''}") from err
    _CONVERTERS[(name, input_path, repr(options))] = conv
    return conv


def converter_for(name: str, input_path: str, options: ConverterOptions) -> Converter:
    """One converter per worker process (opening a builder dir parses its features once)."""
    return _CONVERTERS.get((name, input_path, repr(options))) or open_converter(name, input_path, options)


def _nbytes(ep: Episode) -> int:
    frames = sum(len(b) for f in ep.images.values() if f for b in f if b)
    frames += sum(len(c.data) for c in ep.videos.values() if c.data)
    return frames + ep.action.nbytes + ep.state.nbytes + ep.action_raw.nbytes


@dataclass
class IngestStage(Stage):
    """The group tasks of one ingest: plain data, shipped to Ray workers as is."""

    converter: str
    input: str
    options: ConverterOptions
    output_uri: str
    dataset: str
    datasets_meta: dict
    groups: list[Group]
    verify_images: bool = False
    name: str = "ingest"

    def tasks(self) -> list[Task]:
        return [Task(g.id, group_marker(self.dataset, g.id)) for g in self.groups]

    def is_done(self, out: Output, task: Task) -> bool:
        """The marker, and the shard, MP4s and raw table it names still there at their recorded sizes."""
        if not out.exists(task.marker):
            return False
        shard = out.read_json(task.marker).get("shard")
        if shard is None:
            return True
        return (out.exists(shard["shard"]) and out.size(shard["shard"]) == shard["bytes"]
                and all(out.exists(v["path"]) and out.size(v["path"]) == v["bytes"]
                        for v in [*shard.get("videos", []), *([shard["raw"]] if shard.get("raw") else [])]))

    def run_task(self, task: Task, progress: ProgressFn) -> dict:
        return convert_group(self.groups[task.id], self, progress).to_json()


def _converter_error(conv: Converter, err: Exception) -> ConverterError:
    return ConverterError(f"{conv.name}: {type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}")


def read_contained(conv: Converter, unit) -> Iterator:
    """The converter's reading hook with its exceptions contained: one that escapes ends the unit, and what the
    unit had left is quarantined as one entry (``converter_error`` with the exception's type and message, or
    the code of a named EpisodeError), so the run goes on and the ledger balances."""
    done = 0
    try:
        for item in conv.read(unit):
            done += 1
            yield item
    except Exception as err:
        named = err if isinstance(err, EpisodeError) else _converter_error(conv, err)
        where = f"{unit.source}#{unit.start + done}"
        yield Rejected.from_error(f"{where}..{'end' if unit.stop is None else unit.stop}", named, unit.source)


def convert_group(group: Group, stage: IngestStage, progress: ProgressFn) -> GroupMarker:
    """Convert one group: episodes stream into its shard one batch at a time, so memory stays flat."""
    conv = converter_for(stage.converter, stage.input, stage.options)
    out = Output(stage.output_uri)
    schema = step_schema(stage.datasets_meta)
    raw_schema = conv.raw_schema()
    frames = FrameStorage.from_options(stage.options.extra)  # --opt storage: applied here, for every converter
    writer: ShardWriter | None = None
    rows, rejected, batch = [], [], []
    steps_in = batch_bytes = 0

    def flush():
        nonlocal writer, batch_bytes
        if writer is None:
            writer = ShardWriter(out, group.shard, schema, raw_schema)
        for ep in batch:
            for role, clip in ep.videos.items():
                if clip.data is not None:
                    ep.videos[role] = writer.videos.append(role, clip)
        table = episodes_to_table(batch, schema)
        problems = check_step_table(table)  # the invariants `vlaflow validate` re-checks, on what is written
        if problems:
            raise RuntimeError(f"{group.shard}: converter {stage.converter} produced rows that break the schema's "
                               f"invariants: {problems[0].message}")
        writer.add(table, len(batch), raw_table(batch, raw_schema) if raw_schema is not None else None)
        batch.clear()
        batch_bytes = 0

    def consume():
        nonlocal steps_in, batch_bytes
        for unit in group.units:
            for item in read_contained(conv, unit):
                if isinstance(item, Rejected):
                    rejected.append(item.__dict__)
                    steps_in += item.steps
                    progress(1, item.steps)
                    continue
                steps_in += item.length
                progress(1, item.length)
                try:
                    item = frames.apply(item)
                    validate_episode(item, verify_images=stage.verify_images)
                except Exception as err:  # a malformed episode (wrong dtypes, shapes numpy cannot read) is its own
                    err = err if isinstance(err, EpisodeError) else _converter_error(conv, err)
                    rejected.append(Rejected.from_error(item.episode_id, err, f"{item.source_file}#"
                                                        f"{item.source_index}", item.length).__dict__)
                    continue
                rows.append(episode_row(item, group.shard))
                batch.append(item)
                batch_bytes += _nbytes(item)
                if batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_EPISODES:
                    flush()
        if batch:
            flush()

    try:
        consume()
        shard = writer.close() if writer is not None else None
    except BaseException:
        if writer is not None:  # no half-written shard, temporary MP4s or open containers left behind
            writer.abort()
        raise
    if shard is not None:
        for row, rg in zip(rows, shard.pop("episode_row_group"), strict=True):
            row["row_group"] = rg
    return GroupMarker(
        group=group.id, dataset=group.dataset, split=group.split, shard=shard,
        episodes_in=len(rows) + len(rejected), episodes_out=len(rows), steps_in=steps_in,
        steps_out=sum(r["length"] for r in rows), episodes=rows, rejected=rejected,
        sources=sorted({u.source for u in group.units}),
        warnings=conv.warnings())  # raised while reading, on this worker


@dataclass
class IngestPlan:
    """Everything decided before any task runs: a bad input fails here, in one line."""

    cfg: IngestConfig
    converter: Converter
    stage: IngestStage
    pending: list[Task]
    executor: object
    lock: RunLock
    where: str = ""  # where the work ran (nothing ran when every group was done)

    @property
    def groups(self) -> list[Group]:
        return self.stage.groups


def _same_input(path: str) -> str:
    """An input path as the fingerprint sees it: ``./src/`` and ``/abs/src`` are the same input."""
    return path if "://" in path else os.path.normpath(os.path.abspath(path))


def _fingerprint(cfg: IngestConfig, conv: Converter, groups: list[Group]) -> dict:
    """What the dataset was planned from; the spec and embodiments count by content, not by the file they came from."""
    units = [[g.id, g.shard, [asdict(u) for u in g.units]] for g in groups]
    digest = hashlib.sha256(json.dumps(units, sort_keys=True, default=str).encode()).hexdigest()
    options = {k: v for k, v in asdict(cfg.options).items() if k != "spec_file"}
    return {"converter": conv.name, "converter_version": conv.version, "input": _same_input(cfg.input),
            "options": options, "verify_images": cfg.verify_images, "groups": len(groups),
            "units_sha256": digest}


def _yaml(obj) -> bytes:
    return yaml.safe_dump(obj, sort_keys=True, allow_unicode=True).encode()


def _write_specs(out: Output, conv: Converter, name: str, used: set[str]) -> tuple[dict, str | None]:
    """The resolved embodiment specs of every embodiment the rows use and the dataset spec, so every later
    stage reads them from the output."""
    written = {}
    for eid in sorted(used):
        emb = conv.embodiments.get(eid)
        written[emb.id] = embodiment_file(name, emb.id)
        out.write_bytes(written[emb.id], _yaml(emb.to_dict()))
    spec = conv.resolved_spec()
    if spec is not None:
        out.write_bytes(spec_file(name), _yaml(spec))
    return written, spec_file(name) if spec is not None else None


def prepare(cfg: IngestConfig) -> IngestPlan:
    if not cfg.target_shard_mb > 0:
        raise InputError(f"--target-shard-mb must be positive, got {cfg.target_shard_mb}")
    if cfg.converter == "auto":
        cfg.converter = sniff_converter(cfg.input)
    make_executor(cfg.executor)  # a bad --executor fails here, before any work
    FrameStorage.from_options(cfg.options.extra)  # a bad storage option fails here, in one line
    conv = open_converter(cfg.converter, cfg.input, cfg.options)
    infos = conv.datasets()
    if len(infos) != 1:
        raise InputError(f"converter {cfg.converter} reported {len(infos)} datasets; one per ingest")
    info = infos[0]
    target = max(int(cfg.target_shard_mb * (1 << 20)), 1)
    units = conv.work_units(target)
    if not units or not any(u.nbytes for u in units):
        raise InputError(f"{cfg.input}: the input is empty (no records to read)")
    # A small input still gets several shards so several workers share it (see layout.py).
    small = min(target, max(MIN_SHARD_BYTES, sum(u.nbytes for u in units) // PLAN_MIN_SHARDS))
    if small < target:
        target = small
        units = conv.work_units(target)
    groups = pack(units, info.name, target)
    executor = make_executor(cfg.executor, cfg.num_cpus, sum(u.nbytes for u in units))
    lock = RunLock(cfg.output, f"vlaflow ingest --converter {cfg.converter} --input {cfg.input}").acquire()
    try:
        return _plan(cfg, conv, info, groups, executor, lock)
    except BaseException:
        lock.release()
        raise


def _plan(cfg: IngestConfig, conv: Converter, info, groups: list[Group], executor, lock: RunLock) -> IngestPlan:
    out = Output(cfg.output)
    if out.exists(MANIFEST) and out.read_json(MANIFEST).get("manifest_version") == 1:
        raise InputError(f"{cfg.output} was written by a vlaflow from before corpora (one dataset at the root); "
                         "ingest into a new --output")
    fp = _fingerprint(cfg, conv, groups)
    marker = plan_marker(info.name)
    if out.exists(marker) and out.read_json(marker) != fp:
        raise InputError(f"{cfg.output} already holds dataset {info.name!r} ingested from a different input, converter "
                         f"or options; use a new --output (or delete its data/{info.name}, videos/{info.name} and "
                         f"meta/datasets/{info.name}) instead of mixing them")
    if not out.exists(marker):
        out.write_json(marker, fp)
    stage = IngestStage(cfg.converter, cfg.input, cfg.options, cfg.output, info.name, {info.name: info.to_json()},
                        groups, cfg.verify_images)
    plan = IngestPlan(cfg, conv, stage, [t for t in stage.tasks() if not stage.is_done(out, t)], executor, lock)
    if plan.pending:
        plan.where = executor.start()
    return plan


def run_ingest(cfg: IngestConfig, on_progress=None, plan: IngestPlan | None = None) -> IngestResult:
    """``on_progress(episodes, steps, groups_done, groups_total)`` is called from the driver."""
    t0 = time.perf_counter()
    plan = plan or prepare(cfg)
    with plan.lock:  # held since prepare(); released however this ends
        markers = [GroupMarker.from_json(m, "group marker") for m in run_stage(plan.stage, plan.executor, on_progress)]
        manifest, ledger = finalize(plan, markers)
    warnings = list(dict.fromkeys(plan.converter.warnings() + manifest.warnings))
    return IngestResult(ledger.to_json(), manifest.to_json(), len(plan.groups), len(plan.groups) - len(plan.pending),
                        time.perf_counter() - t0, warnings, plan.where)


def finalize(plan: IngestPlan, markers: list[GroupMarker]) -> tuple[DatasetManifest, Ledger]:
    """The dataset's manifest, ledger, quarantine and episodes table from its markers; then the root's."""
    out, cfg, conv, name = Output(plan.cfg.output), plan.cfg, plan.converter, plan.stage.dataset
    led = Ledger()
    shards, rows, rejected, warnings = [], [], [], []
    for m in markers:
        led.add(m.ledger())
        rejected.extend(m.rejected)
        rows.extend(m.episodes)
        warnings.extend(w for w in m.warnings if w not in warnings)
        if (entry := m.shard_entry()) is not None:
            shards.append(entry)
    used = {r["embodiment"] for r in rows} | {plan.stage.datasets_meta[name]["embodiment"]}
    embodiments, spec = _write_specs(out, conv, name, used)
    out.write_bytes(dataset_file(name, EPISODES), parquet_bytes(episodes_table(rows)))
    out.write_bytes(dataset_file(name, QUARANTINE),
                    "".join(json.dumps(r, sort_keys=True) + "\n" for r in rejected).encode())
    manifest = DatasetManifest.build(
        schema_version=SCHEMA_VERSION, converter=conv.name, converter_version=conv.version, input=cfg.input,
        target_shard_mb=cfg.target_shard_mb, datasets=plan.stage.datasets_meta,
        schema=schema_metadata(plan.stage.datasets_meta), shards=shards,
        episodes_table=dataset_file(name, EPISODES), quarantine=dataset_file(name, QUARANTINE),
        ledger=dataset_file(name, LEDGER), warnings=warnings, embodiments=embodiments, spec=spec)
    out.write_json(dataset_file(name, LEDGER), led.to_json())
    out.write_json(dataset_file(name, MANIFEST), manifest.to_json())  # last: the dataset is complete
    rebuild_root(out)
    return manifest, led
