"""``vlaflow ingest``: plan → Ray read tasks (convert, validate, quarantine, write a shard) → finalize.

Resume: a group whose marker exists and whose shard matches it is skipped. Finalize rebuilds the
manifest, ledger, quarantine list and episodes table from the markers alone, so a resumed run
writes the same bytes as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field

from vlaflow.converters import Converter, ConverterOptions
from vlaflow.converters import load as load_converter
from vlaflow.converters import sniff as sniff_converter
from vlaflow.schemas import SCHEMA_VERSION, InputError, episodes_table, schema_metadata

from .layout import (DEFAULT_TARGET_SHARD_MB, EPISODES, LEDGER, MANIFEST, MANIFEST_VERSION, MIN_SHARD_BYTES,
                     PLAN_MARKER, PLAN_MIN_SHARDS, QUARANTINE, group_marker)
from .plan import Group, pack
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


@dataclass
class IngestResult:
    ledger: dict
    manifest: dict
    groups_total: int
    groups_skipped: int
    seconds: float
    warnings: list[str]
    ray: str = ""  # where the work ran

    @property
    def clean(self) -> bool:
        return self.ledger["episodes_quarantined"] == 0


@dataclass
class Plan:
    """Everything decided before Ray starts: a bad input fails here, in one line."""

    cfg: IngestConfig
    converter: Converter
    datasets_meta: dict
    groups: list[Group]
    pending: list[Group]
    out: Output
    ray: str = "nothing to do"  # where the work will run


def group_complete(out: Output, g: Group) -> bool:
    if not out.exists(group_marker(g.id)):
        return False
    shard = out.read_json(group_marker(g.id)).get("shard")
    if shard is None:
        return True
    return (out.exists(g.shard) and out.size(g.shard) == shard["bytes"]
            and all(out.exists(v["path"]) and out.size(v["path"]) == v["bytes"] for v in shard.get("videos", [])))


def _fingerprint(cfg: IngestConfig, conv: Converter, groups: list[Group]) -> dict:
    units = [[g.id, g.shard, [asdict(u) for u in g.units]] for g in groups]
    digest = hashlib.sha256(json.dumps(units, sort_keys=True, default=str).encode()).hexdigest()
    return {"converter": conv.name, "converter_version": conv.version, "input": cfg.input,
            "options": asdict(cfg.options), "verify_images": cfg.verify_images, "groups": len(groups),
            "units_sha256": digest}


def prepare(cfg: IngestConfig) -> Plan:
    if cfg.converter == "auto":
        cfg.converter = sniff_converter(cfg.input)
    conv = load_converter(cfg.converter)(cfg.input, cfg.options)
    infos = conv.datasets()
    if len(infos) != 1:
        raise InputError(f"converter {cfg.converter} reported {len(infos)} datasets; one per ingest")
    info = infos[0]
    datasets_meta = {info.name: info.to_json()}
    target = max(int(cfg.target_shard_mb * (1 << 20)), 1)
    units = conv.plan(target)
    if not units or not any(u.nbytes for u in units):
        raise InputError(f"{cfg.input}: the input is empty (no records to read)")
    # A small input still gets several shards so several workers share it (see layout.py).
    small = min(target, max(MIN_SHARD_BYTES, sum(u.nbytes for u in units) // PLAN_MIN_SHARDS))
    if small < target:
        target = small
        units = conv.plan(target)
    groups = pack(units, info.name, target)
    out = Output(cfg.output)
    fp = _fingerprint(cfg, conv, groups)
    if out.exists(PLAN_MARKER) and out.read_json(PLAN_MARKER) != fp:
        raise InputError(f"{cfg.output} holds an ingest of a different input, converter or options; "
                         "use a new --output (or delete the folder) instead of mixing them")
    if not out.exists(PLAN_MARKER):
        out.write_json(PLAN_MARKER, fp)
    pending = [g for g in groups if not group_complete(out, g)]
    plan = Plan(cfg, conv, datasets_meta, groups, pending, out)
    if pending:
        from .ray_compat import init_ray

        plan.ray = init_ray(cfg.num_cpus)
    return plan


def run_ingest(cfg: IngestConfig, on_progress=None, plan: Plan | None = None) -> IngestResult:
    """``on_progress(episodes, steps, groups_done, groups_total)`` is called from the driver."""
    t0 = time.perf_counter()
    plan = plan or prepare(cfg)
    if plan.pending:
        _execute(plan, on_progress)
    manifest, ledger = finalize(plan)
    warnings = list(dict.fromkeys(plan.converter.warnings() + manifest["warnings"]))
    return IngestResult(ledger, manifest, len(plan.groups), len(plan.groups) - len(plan.pending),
                        time.perf_counter() - t0, warnings, plan.ray)


def _progress_actor(name: str):
    import ray

    @ray.remote(num_cpus=0)
    class Progress:
        def __init__(self):
            self.episodes = self.steps = 0

        def add(self, episodes, steps):
            self.episodes += episodes
            self.steps += steps

        def get(self):
            return self.episodes, self.steps

    return Progress.options(name=name).remote()


def _execute(plan: Plan, on_progress) -> None:
    import ray

    from .datasource import EpisodeDatasource
    from .ray_compat import configure_data_context

    cfg, pending = plan.cfg, plan.pending
    configure_data_context()
    actor_name = f"vlaflow-progress-{uuid.uuid4().hex[:8]}"
    actor = _progress_actor(actor_name) if on_progress else None
    source = EpisodeDatasource(pending, cfg.converter, cfg.input, cfg.options, cfg.output,
                               plan.datasets_meta, cfg.verify_images, actor_name if actor else None)
    ds = ray.data.read_datasource(source, override_num_blocks=len(pending), num_cpus=1)
    done: list[dict] = []
    error: list[BaseException] = []

    def _consume():
        try:
            done.extend(ds.iter_rows())
        except BaseException as err:  # surfaced on the driver thread below
            error.append(err)

    th = threading.Thread(target=_consume, daemon=True)
    th.start()
    while th.is_alive():
        th.join(0.25)
        if actor is not None:
            try:
                e, s = ray.get(actor.get.remote(), timeout=5)
                on_progress(e, s, len(done), len(pending))
            except Exception:  # progress is best-effort; the run's result is what counts
                pass
    if actor is not None:
        on_progress(*ray.get(actor.get.remote()), len(pending), len(pending))
        ray.kill(actor)
    if error:
        raise error[0]


def finalize(plan: Plan):
    out, cfg, conv = plan.out, plan.cfg, plan.converter
    shards, rows, rejected, warnings = [], [], [], []
    led = dict(episodes_in=0, episodes_out=0, episodes_quarantined=0, steps_in=0, steps_out=0,
               steps_quarantined=0)
    by_reason: dict[str, int] = {}
    for g in plan.groups:
        if not group_complete(out, g):
            raise RuntimeError(f"group {g.id} ({g.shard}) did not complete; re-run to resume")
        m = out.read_json(group_marker(g.id))
        for k in ("episodes_in", "episodes_out", "steps_in", "steps_out"):
            led[k] += m[k]
        for r in m["rejected"]:
            led["episodes_quarantined"] += 1
            led["steps_quarantined"] += r.get("steps", 0)
            by_reason[r["code"]] = by_reason.get(r["code"], 0) + 1
            rejected.append(r)
        rows.extend(m["episodes"])
        warnings.extend(w for w in m.get("warnings", []) if w not in warnings)
        if m["shard"]:
            shards.append({"path": m["shard"]["shard"], "dataset": g.dataset, "split": g.split,
                           **{k: m["shard"][k] for k in ("rows", "episodes", "row_groups", "bytes", "sha256")},
                           "videos": m["shard"].get("videos", []), "sources": m["sources"]})
    led["by_reason"] = dict(sorted(by_reason.items()))
    led["balanced"] = led["episodes_in"] == led["episodes_out"] + led["episodes_quarantined"]
    out.write_bytes(EPISODES, _parquet_bytes(episodes_table(rows)))
    out.write_bytes(QUARANTINE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rejected).encode())
    manifest = {
        "manifest_version": MANIFEST_VERSION, "schema_version": SCHEMA_VERSION,
        "converter": conv.name, "converter_version": conv.version, "input": cfg.input,
        "target_shard_mb": cfg.target_shard_mb, "datasets": plan.datasets_meta,
        "schema": schema_metadata(plan.datasets_meta), "shards": shards,
        "totals": {"shards": len(shards), "rows": sum(s["rows"] for s in shards),
                   "episodes": sum(s["episodes"] for s in shards), "bytes": sum(s["bytes"] for s in shards),
                   "video_bytes": sum(v["bytes"] for s in shards for v in s["videos"])},
        "episodes_table": EPISODES, "quarantine": QUARANTINE, "ledger": LEDGER,
        "warnings": warnings,
    }
    out.write_json(MANIFEST, manifest)
    out.write_json(LEDGER, led)
    return manifest, led


def _parquet_bytes(table) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue().to_pybytes()
