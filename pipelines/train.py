"""``vlaflow train``: the reference VLA training job on Ray Train V2 (``TorchTrainer``), fed by ``train_data``.

The driver opens the corpus, its ``stats.json`` and features (one-line errors naming the command to run when one is
missing), plans the seeded schedule, finds the run's latest checkpoint under ``RunConfig(storage_path, name)`` and
builds the Ray Dataset from the schedule position that checkpoint consumed (whole shards before it are never read
again). Each worker: ``ray.train.get_checkpoint()`` → model, optimizer, scheduler, step and samples consumed;
``get_dataset_shard("train").iter_torch_batches(collate_fn=<VLAProcessor>)`` created once per pass (it is one-shot);
DDP through ``ray.train.torch.prepare_model`` (gloo on CPU, NCCL on GPU); ``ray.train.report`` every
``checkpoint_every`` steps with a checkpoint folder in the ``vlaflow.models.vla`` layout (``save_pretrained`` +
``stats.json`` + ``embodiments.json`` + ``train_state.pt``) and metrics per task family, data-wait vs compute time.

``num_workers: 0`` runs the same loop in this process (Ray Train's local mode); its checkpoints are written to the
same ``storage_path/name/checkpoint_<step>`` folders by the loop itself, so resume works the same way.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import posixpath
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vlaflow.schemas import InputError, SpecError

from .train_data import TARGET_WIDTH, Feed, FeedConfig, Schedule, block_to_samples, build_feed, features_signature, \
    ray_dataset

CHECKPOINT_PREFIX = "checkpoint_"
PROGRESS = "progress.json"  # inside a checkpoint: step, samples consumed, the data fingerprint (json, no torch)
TRAIN_STATE = "train_state.pt"
RUN_CONFIG = "train_config.json"
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train V2's record of the run's checkpoints


@dataclass
class TrainConfig:
    """The ``train:`` section of a config YAML (``configs/sample.yaml``); ``data:`` is a ``FeedConfig``, ``model:``
    ``VLAConfig`` keys (horizon, vision, vision_dim, cameras, embodiments, normalization are filled from the data)."""

    output: str = ""                 # RunConfig.storage_path: runs live in OUTPUT/NAME/checkpoint_*/
    name: str = "vla"                # RunConfig.name: the same (output, name) resumes
    data: FeedConfig = field(default_factory=FeedConfig)
    model: dict = field(default_factory=dict)
    steps: int | None = None         # stop after this many optimizer steps (default: the whole schedule)
    batch_size: int = 8              # per worker
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 0
    grad_clip: float = 1.0
    checkpoint_every: int = 50
    num_to_keep: int = 2
    num_workers: int = 1             # 0: in this process (Ray Train local mode)
    use_gpu: bool = False
    cpus_per_worker: float = 1
    shuffle_buffer: int = 0          # iter_torch_batches' local shuffle (seeded); 0 keeps the schedule's order
    prefetch_batches: int = 1
    log_every: int = 10
    seed: int = 0


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _unknown(key: str, known: list[str], where: str) -> SpecError:
    near = difflib.get_close_matches(key, known, n=1)
    return SpecError(f"{where}{key}: unknown key" + (f" (did you mean {near[0]!r}?)" if near else "")
                     + f"; known: {', '.join(known)}")


def train_config_from_dict(doc: dict, where: str = "train.") -> TrainConfig:
    """A ``TrainConfig`` from YAML data: a typo is a one-line error naming the key (and the nearest known one)."""
    if not isinstance(doc, dict):
        raise SpecError(f"{where.rstrip('.')}: expected a mapping of keys, got {type(doc).__name__}")
    known = _fields(TrainConfig)
    for k in doc:
        if k not in known:
            raise _unknown(k, known, where)
    kw = dict(doc)
    data = kw.pop("data", None) or {}
    if not isinstance(data, dict):
        raise SpecError(f"{where}data: expected a mapping")
    for k in data:
        if k not in _fields(FeedConfig):
            raise _unknown(k, _fields(FeedConfig), f"{where}data.")
    model = kw.get("model") or {}
    if not isinstance(model, dict):
        raise SpecError(f"{where}model: expected a mapping of VLAConfig keys")
    kw["model"] = model
    try:
        kw["data"] = FeedConfig(**data)
        cfg = TrainConfig(**kw)
    except TypeError as err:
        raise SpecError(f"{where.rstrip('.')}: {err}") from None
    for k in ("batch_size", "checkpoint_every", "num_to_keep", "log_every", "prefetch_batches"):
        v = getattr(cfg, k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SpecError(f"{where}{k}: expected an integer >= 1, got {v!r}")
    if not isinstance(cfg.num_workers, int) or cfg.num_workers < 0:
        raise SpecError(f"{where}num_workers: expected an integer >= 0, got {cfg.num_workers!r}")
    if cfg.steps is not None and (not isinstance(cfg.steps, int) or cfg.steps < 1):
        raise SpecError(f"{where}steps: expected an integer >= 1 or null, got {cfg.steps!r}")
    return cfg


def apply_overrides(doc: dict, overrides: list[str]) -> dict:
    """``key.sub=value`` pairs (values parsed as YAML) applied to a config section."""
    import yaml

    doc = json.loads(json.dumps(doc))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SpecError(f"override {item!r}: expected KEY=VALUE (e.g. steps=20 or data.mixture=unified)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = doc
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SpecError(f"override {item!r}: {p} is not a mapping")
        node[parts[-1]] = value
    return doc


# --------------------------------------------------------------------------------------------- checkpoints
def run_dir(cfg: TrainConfig) -> str:
    return posixpath.join(cfg.output, cfg.name)


def data_fingerprint(cfg: TrainConfig, feed: Feed, schedule: Schedule) -> dict:
    """What a schedule position means: resuming under another data config would skip the wrong samples."""
    d = asdict(cfg.data)
    d.pop("stats", None)
    return {"data": d, "schedule_total": schedule.total, "items": len(schedule.items),
            "batch_size": cfg.batch_size, "stats_cache_key": feed.stats.get("cache_key", ""),
            "features": feed.features_signature}


def latest_checkpoint(folder: str) -> str | None:
    """The run's latest checkpoint folder: the one Ray Train's snapshot names, else (local mode) the highest step
    with a complete ``progress.json``."""
    p = Path(folder)
    snap = p / RAY_SNAPSHOT
    if snap.is_file():
        try:
            doc = json.loads(json.loads(snap.read_text())) if snap.read_text().startswith('"') else json.loads(
                snap.read_text())
            name = (doc.get("latest_checkpoint_result") or {}).get("checkpoint_dir_name")
            if name and (p / name / PROGRESS).is_file():
                return str(p / name)
        except (ValueError, AttributeError):
            pass
    found = sorted(d for d in p.glob(CHECKPOINT_PREFIX + "*") if (d / PROGRESS).is_file())
    return str(found[-1]) if found else None


def read_progress(ckpt: str) -> dict:
    return json.loads((Path(ckpt) / PROGRESS).read_text())


def embodiment_specs(corpus, names: list[str], datasets: list[str]) -> dict:
    """The spec dicts of the embodiments trained on, each with the prompt the data carried (``"prompt"``: the rows'
    ``embodiment_prompt``, which may name the dataset's rate), so predict prompts exactly as training did."""
    import pyarrow.parquet as pq

    from vlaflow.schemas import Col

    reg = corpus.embodiments()
    specs = {n: reg.get(n).to_dict() for n in names}
    for d in datasets:
        emb = corpus.datasets()[d]["embodiment"]
        if emb not in specs or "prompt" in specs[emb]:
            continue
        root, shard = corpus.shards(d)[0]
        with root.out.fs.open_input_file(root.out.path(shard.path)) as f:
            col = pq.ParquetFile(f).read_row_group(0, columns=[Col.EMBODIMENT_PROMPT])[Col.EMBODIMENT_PROMPT]
        if len(col):
            specs[emb]["prompt"] = str(col[0].as_py())
    return specs


def encoder_width(encoder: str) -> int:
    """The feature width of a vision encoder, from its config alone (offline)."""
    from transformers import AutoConfig

    from vlaflow.models.vision_encoders import resolve_encoder_dir

    folder, _ = resolve_encoder_dir(encoder)
    c = AutoConfig.from_pretrained(folder, local_files_only=True)
    return int(getattr(c, "hidden_size", 0) or c.vision_config.hidden_size)


def model_config(cfg: TrainConfig, feed: Feed, embodiments: list[str]):
    from vlaflow.models.vla import VLAConfig

    d = dict(cfg.model)
    filled = {"horizon": cfg.data.horizon, "vision": cfg.data.vision, "cameras": list(cfg.data.cameras),
              "vision_tokens": cfg.data.vision_tokens, "normalization": cfg.data.normalization,
              "action_dim": TARGET_WIDTH, "embodiments": embodiments}
    if cfg.data.vision == "features":
        filled["vision_dim"] = feed.features_dim
    elif cfg.data.vision == "encoder":
        if not d.get("vision_encoder"):
            raise SpecError("train.model.vision_encoder: data.vision: encoder needs the encoder (a local folder or a "
                            "cached Hub id)")
        filled["vision_dim"] = encoder_width(d["vision_encoder"])
    for k, v in filled.items():
        if k in d and d[k] != v and k not in ("embodiments",):
            raise SpecError(f"train.model.{k}: {d[k]!r} disagrees with the data ({v!r}); set it under train.data "
                            "or leave it out")
        d[k] = v
    try:
        return VLAConfig.from_dict(d)
    except ValueError as err:
        raise SpecError(str(err).replace("model config: ", "train.model.")) from None


# ------------------------------------------------------------------------------------------------- the loop
def _collate_base():
    from ray.data.collate_fn import NumpyBatchCollateFn

    return NumpyBatchCollateFn


class Collate(_collate_base()):
    """``iter_torch_batches``' collate_fn: Ray's numpy columns → samples → ``VLAProcessor`` tensors (+ positions)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, batch: dict):
        import torch

        out = self.processor(block_to_samples(batch))
        out["_position"] = torch.tensor(np.asarray(batch["position"], np.int64))
        out["_epoch"] = torch.tensor(np.asarray(batch["epoch"], np.int64))
        return out


def _lr_lambda(warmup: int):
    return lambda step: min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def write_checkpoint(folder: Path, model, optimizer, scheduler, step: int, consumed: int, epoch: int, loop_cfg: dict,
                     metrics: dict) -> None:
    """The contract layout: save_pretrained + stats.json + embodiments.json + train_state.pt (+ progress.json and the
    run config, written last)."""
    import torch

    inner = getattr(model, "module", model)
    inner.save_pretrained(folder)
    (folder / "stats.json").write_text(json.dumps(loop_cfg["stats"], sort_keys=True))
    (folder / "embodiments.json").write_text(json.dumps(loop_cfg["embodiment_specs"], sort_keys=True, indent=1))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                "samples_consumed": consumed, "epoch": epoch, "torch_rng": torch.get_rng_state()},
               folder / TRAIN_STATE)
    (folder / RUN_CONFIG).write_text(json.dumps(loop_cfg["run_config"], sort_keys=True, indent=1))
    (folder / PROGRESS).write_text(json.dumps({"step": step, "samples_consumed": consumed, "epoch": epoch,
                                               "fingerprint": loop_cfg["fingerprint"], "metrics": metrics},
                                              sort_keys=True))


def train_loop_per_worker(loop_cfg: dict) -> None:
    """One Ray Train worker (or this process in local mode): restore, iterate, step, report."""
    import ray.train
    import ray.train.torch
    import torch
    from ray.train import Checkpoint

    from vlaflow.models.vla import VLAConfig, VLAModel

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(loop_cfg["seed"] + rank)
    use_gpu = loop_cfg["use_gpu"]
    device = ray.train.torch.get_device() if use_gpu else torch.device("cpu")
    cfg = VLAConfig.from_dict(loop_cfg["model"])
    batch_size, max_steps = loop_cfg["batch_size"], loop_cfg["max_steps"]

    ckpt_dir, ckpt_ctx = None, None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        ckpt_ctx = ckpt.as_directory()
        ckpt_dir = ckpt_ctx.__enter__()
    elif loop_cfg.get("resume_dir"):
        ckpt_dir = loop_cfg["resume_dir"]
    state = None
    if ckpt_dir is not None:
        model = VLAModel.from_pretrained(ckpt_dir)
        state = torch.load(Path(ckpt_dir) / TRAIN_STATE, map_location="cpu", weights_only=True)
    else:
        model = VLAModel(cfg)
    processor = model.processor()
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=loop_cfg["lr"], weight_decay=loop_cfg["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(loop_cfg["warmup_steps"]))
    step, consumed, epoch = 0, 0, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, consumed, epoch = int(state["step"]), int(state["samples_consumed"]), int(state["epoch"])
    if ckpt_ctx is not None:
        ckpt_ctx.__exit__(None, None, None)
    if world > 1:
        model = ray.train.torch.prepare_model(model)
    model.train()

    # the dataset starts at the driver's position; a checkpoint that consumed more (a race with the driver's read
    # of the snapshot) is caught up by skipping whole batches
    skip_batches = max(0, consumed - loop_cfg["start_position"]) // (batch_size * world)
    shard = ray.train.get_dataset_shard("train")
    it = shard.iter_torch_batches(batch_size=batch_size, collate_fn=Collate(processor), drop_last=True,
                                  prefetch_batches=loop_cfg["prefetch_batches"],
                                  local_shuffle_buffer_size=loop_cfg["shuffle_buffer"] or None,
                                  local_shuffle_seed=(loop_cfg["seed"] + step) if loop_cfg["shuffle_buffer"] else None)
    steps_here = loop_cfg["steps_available"]
    fam_sum: dict[str, float] = {}
    fam_n: dict[str, int] = {}
    wait_s = compute_s = 0.0
    window_samples, losses = 0, []
    first_loss = first_pos = None
    t_window = time.perf_counter()
    batches = iter(it)
    done_here = 0
    while done_here < steps_here and (max_steps is None or step < max_steps):
        t0 = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            break
        if skip_batches:
            skip_batches -= 1
            continue
        t1 = time.perf_counter()
        pos = batch.pop("_position")
        first_pos = int(pos.min()) if first_pos is None else first_pos
        epoch = int(batch.pop("_epoch").max())
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        out = model(batch)
        loss = out["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if loop_cfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(params, loop_cfg["grad_clip"])
        optimizer.step()
        scheduler.step()
        t2 = time.perf_counter()
        wait_s += t1 - t0
        compute_s += t2 - t1
        step += 1
        done_here += 1
        consumed += len(pos) * world
        window_samples += len(pos)
        lv = float(loss.detach())
        first_loss = lv if first_loss is None else first_loss
        losses.append(lv)
        for k, v in out.items():
            if k.startswith("loss/"):
                fam_sum[k] = fam_sum.get(k, 0.0) + float(v)
                fam_n[k] = fam_n.get(k, 0) + 1
        last = done_here >= steps_here or (max_steps is not None and step >= max_steps)
        if step % loop_cfg["log_every"] == 0 or step % loop_cfg["checkpoint_every"] == 0 or last:
            dt = max(time.perf_counter() - t_window, 1e-9)
            metrics = {"step": step, "epoch": epoch, "samples_consumed": consumed, "loss": float(np.mean(losses)),
                       "first_loss": first_loss, "lr": scheduler.get_last_lr()[0],
                       "data_wait_s": wait_s, "compute_s": compute_s,
                       "data_wait_fraction": wait_s / max(wait_s + compute_s, 1e-9),
                       "samples_per_s": window_samples * world / dt, "world_size": world, "run_first_position": first_pos,
                       **{k: fam_sum[k] / fam_n[k] for k in sorted(fam_sum)}}
            fam_sum, fam_n, losses, window_samples = {}, {}, [], 0
            wait_s = compute_s = 0.0
            t_window = time.perf_counter()
            checkpoint = None
            if step % loop_cfg["checkpoint_every"] == 0 or last:
                tmp = Path(tempfile.mkdtemp(prefix="vlaflow-ckpt-"))
                if rank == 0:
                    write_checkpoint(tmp, model, optimizer, scheduler, step, consumed, epoch, loop_cfg, metrics)
                    checkpoint = Checkpoint.from_directory(str(tmp))
                name = f"{CHECKPOINT_PREFIX}{step:08d}"
                if loop_cfg["local_mode"] and rank == 0:  # Ray's local mode keeps no checkpoints: persist them here
                    dest = Path(loop_cfg["run_dir"]) / name
                    if dest.exists():
                        shutil.rmtree(dest)
                    shutil.copytree(tmp, dest)
                    _prune(Path(loop_cfg["run_dir"]), loop_cfg["num_to_keep"])
                ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                ray.train.report(metrics)
    if loop_cfg.get("print_progress") and rank == 0:
        print(f"vlaflow train: step {step}, {consumed} samples consumed", flush=True)


def _prune(folder: Path, keep: int) -> None:
    found = sorted(d for d in folder.glob(CHECKPOINT_PREFIX + "*") if (d / PROGRESS).is_file())
    for d in found[:-keep]:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ the driver
@dataclass
class TrainResult:
    metrics: dict
    checkpoint: str | None
    run_dir: str
    resumed_from: int  # the step the run resumed at (0: fresh)
    start_position: int
    schedule: Schedule
    seconds: float
    already_done: bool = False  # the run had reached ``steps`` before this launch: nothing was trained


def run_training(cfg: TrainConfig, num_cpus: int | None = None) -> TrainResult:
    """Plan, resume and fit. Returns the final metrics and the latest checkpoint folder."""
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from .ray_compat import configure_data_context, init_ray

    t0 = time.perf_counter()
    if not cfg.output:
        raise InputError("train: no output folder (vlaflow train OUT, or train.output in the config)")
    if not cfg.data.corpus:
        raise InputError("train.data.corpus: name the corpus root or corpus YAML to train on")
    if "://" not in cfg.output:
        cfg.output = os.path.abspath(cfg.output)
    if "://" not in cfg.data.corpus and not os.path.isabs(cfg.data.corpus):
        cfg.data.corpus = os.path.abspath(cfg.data.corpus)
    if "://" in cfg.output:
        raise InputError("train.output: use a local or shared filesystem path (resume discovery reads it directly)")
    corpus, feed, schedule = build_feed(cfg.data)
    embodiments = sorted({corpus.datasets()[d]["embodiment"] for d in schedule.probabilities})
    mcfg = model_config(cfg, feed, embodiments)
    if cfg.data.vision == "encoder":  # frames decoded and preprocessed in the read tasks, not the collate
        feed.image_processor = mcfg.vision_encoder
    fingerprint = data_fingerprint(cfg, feed, schedule)
    rdir = run_dir(cfg)
    resume = latest_checkpoint(rdir)
    start, resumed_step = 0, 0
    if resume:
        prog = read_progress(resume)
        if prog.get("fingerprint") != fingerprint:
            raise InputError(f"{rdir}: this run was started with another data config, batch size, statistics or "
                             "features encoder; resuming would skip the wrong samples or mix features: pick a new "
                             "--name (or delete the run folder)")
        start, resumed_step = int(prog["samples_consumed"]), int(prog["step"])
        old = json.loads((Path(resume) / "config.json").read_text())
        if {k: v for k, v in old.items() if k != "extra"} != {k: v for k, v in mcfg.to_dict().items() if k != "extra"}:
            raise InputError(f"{rdir}: this run's checkpoint has another model config; pick a new --name")
    world = max(1, cfg.num_workers)
    remaining = schedule.total - start
    steps_available = remaining // world // cfg.batch_size
    if cfg.steps is not None and resumed_step >= cfg.steps:  # done already: a rerun is a no-op, like ingest's
        return TrainResult(dict(prog.get("metrics") or {}), resume, rdir, resumed_step, start, schedule,
                           time.perf_counter() - t0, already_done=True)
    if steps_available < 1:
        raise InputError(f"{rdir}: nothing left to train on at schedule position {start} of {schedule.total}: "
                         "raise data.epochs or data.samples_per_epoch (or pick a new --name)")
    init_ray(num_cpus)
    configure_data_context()
    ds = ray_dataset(feed, schedule.starting_at(start))
    loop_cfg = {
        "model": mcfg.to_dict(), "batch_size": cfg.batch_size, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
        "warmup_steps": cfg.warmup_steps, "grad_clip": cfg.grad_clip, "checkpoint_every": cfg.checkpoint_every,
        "log_every": cfg.log_every, "max_steps": cfg.steps, "seed": cfg.seed, "use_gpu": cfg.use_gpu,
        "shuffle_buffer": cfg.shuffle_buffer, "prefetch_batches": cfg.prefetch_batches,
        "start_position": start, "steps_available": steps_available, "resume_dir": resume,
        "local_mode": cfg.num_workers == 0, "run_dir": rdir, "num_to_keep": cfg.num_to_keep,
        "stats": feed.stats, "embodiment_specs": embodiment_specs(corpus, embodiments, sorted(schedule.probabilities)), "fingerprint": fingerprint,
        "run_config": {"train": _jsonable(cfg), "features": feed.features_signature, "features_key": feed.features_key,
                       "mixture": schedule.probabilities},
    }
    from ray.data import ExecutionOptions
    from ray.train import DataConfig

    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=loop_cfg,
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker} if cfg.num_workers else None),
        run_config=RunConfig(storage_path=cfg.output, name=cfg.name,
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.num_to_keep)),
        datasets={"train": ds},
        dataset_config=DataConfig(execution_options=ExecutionOptions(preserve_order=True)))
    try:
        result = trainer.fit()
    except Exception as err:  # a worker's VlaflowError reaches us wrapped: give the user its one line
        from .runner import _user_error

        found = _user_error(err) or _user_error(getattr(err, "__cause__", None))
        if found is not None:
            raise found from None
        raise
    del ray
    latest = latest_checkpoint(rdir)
    return TrainResult(dict(result.metrics or {}), latest, rdir, resumed_step, start, schedule,
                       time.perf_counter() - t0)


def _jsonable(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg), default=str))


def load_config_file(path: str, section: str) -> dict:
    """A stage's section of a config YAML (``train:``, ``ingest:``…); a file without sections is the section."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such config file")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: expected a mapping")
    stages = ("ingest", "stats", "features", "train", "predict")
    if any(k in doc for k in stages):
        if section not in doc:
            raise SpecError(f"{path}: no `{section}:` section (it has {', '.join(k for k in doc if k in stages)})")
        sec = doc[section]
        return sec if isinstance(sec, dict) else {}
    return doc


# ------------------------------------------------------------------------------------------------- predict
def resolve_checkpoint(path: str) -> str:
    """A checkpoint folder as it is; a run folder → its latest checkpoint."""
    p = Path(path)
    if (p / "config.json").is_file():
        return str(p)
    if p.is_dir():
        found = latest_checkpoint(str(p))
        if found:
            return found
    raise InputError(f"{path}: not a checkpoint folder (no config.json) nor a run folder with checkpoints; "
                     "train one with `vlaflow train`")


def predict_step(checkpoint: str, episode: str, step: int = 0, corpus: str | None = None, seed: int = 0) -> dict:
    """The policy's chunk for one recorded step of the corpus, beside the recorded actions, both in the embodiment's
    units: {"predicted": {slot: [H][w]}, "recorded": {slot: [H][w] (None past the episode or invalid)}, ...}."""
    from vlaflow.models.vla import PolicyError, load_policy
    from vlaflow.schemas import ACTION, STATE, Col
    from vlaflow.schemas.arrow import fixed_to_numpy

    from .corpus import Corpus

    ckpt = resolve_checkpoint(checkpoint)
    run_cfg_path = Path(ckpt) / RUN_CONFIG
    run_cfg = json.loads(run_cfg_path.read_text()) if run_cfg_path.is_file() else {}
    corpus_path = corpus or (run_cfg.get("train") or {}).get("data", {}).get("corpus")
    if not corpus_path:
        raise InputError(f"{ckpt}: it does not record its corpus; pass --corpus")
    try:
        policy = load_policy(ckpt)
    except PolicyError as err:
        raise InputError(str(err)) from None
    cfg = policy.config
    c = Corpus.open(corpus_path)
    cols = [Col.DATASET, Col.EMBODIMENT, Col.EPISODE_ID, Col.STEP_INDEX, Col.INSTRUCTION, Col.ACTION, Col.ACTION_MASK,
            Col.ACTION_VALID, Col.STATE, Col.STATE_MASK]
    observation: dict = {}
    if cfg.vision == "features":
        from .features import FeatureReader
        from .train_data import features_manifest

        key = run_cfg.get("features_key")
        root = c.root_of(str(c._locate(episode)[0]["dataset"]))
        want = run_cfg.get("features")
        have = features_signature(features_manifest(root.out, key)) if key else None
        if want and have != want:
            raise InputError(f"{root.uri}: its features {key!r} come from another encoder or settings than the ones "
                             f"this checkpoint trained on; run `vlaflow features {root.uri} --encoder <the training "
                             "encoder> --key NEWKEY` or pass the corpus it trained on")
        fr = FeatureReader(root.uri, key)
        t = fr.episode(episode, columns=cols)
    else:
        t = c.read_episode(episode, columns=cols + ([Col.IMAGES] if cfg.vision == "encoder" else []))
    if not 0 <= step < t.num_rows:
        raise InputError(f"episode {episode!r} has steps 0..{t.num_rows - 1}; --step {step} is outside")
    row = t.slice(step, 1)
    dataset, emb = row[Col.DATASET][0].as_py(), row[Col.EMBODIMENT][0].as_py()
    state = fixed_to_numpy(row[Col.STATE], STATE.width, np.float32)[0]
    observation["state"] = state
    if cfg.vision == "features":
        vision = {}
        for role in cfg.cameras:
            name = FeatureReader.PREFIX + role
            if name in row.schema.names:
                vals, mask = fr.arrays(row, role, cfg.vision_tokens > 1)
                if mask[0]:
                    vision[role] = vals[0]
        observation["vision"] = vision
    elif cfg.vision == "encoder":
        imgs = row[Col.IMAGES].combine_chunks()
        observation["images"] = {r: imgs.field(r).field("bytes")[0].as_py() for r in cfg.cameras
                                 if r in row.schema.field(Col.IMAGES).type.names}
    instruction = row[Col.INSTRUCTION][0].as_py() or ""
    try:
        pred = policy.predict(observation, instruction, emb, dataset=dataset, seed=seed)
    except PolicyError as err:
        raise InputError(str(err)) from None
    act = fixed_to_numpy(t[Col.ACTION], ACTION.width, np.float32)
    amask = fixed_to_numpy(t[Col.ACTION_MASK], ACTION.width, bool)
    valid = t[Col.ACTION_VALID].to_numpy(zero_copy_only=False)
    recorded, errs = {}, []
    for slot, chunk in pred.items():
        if "/" in slot:
            continue
        a, b = ACTION.range(slot)
        rows = []
        for k in range(chunk.shape[0]):
            i = step + k
            if i < t.num_rows and valid[i] and amask[i, a:b].all():
                rows.append([float(v) for v in act[i, a:b]])
                errs.append(np.abs(chunk[k] - act[i, a:b]).mean())
            else:
                rows.append(None)
        recorded[slot] = rows
    units = {s.name: s.unit for s in ACTION.slots}
    prog = read_progress(ckpt) if (Path(ckpt) / PROGRESS).is_file() else {}
    return {"checkpoint": ckpt, "train_step": prog.get("step"), "episode": episode, "step": step, "dataset": dataset,
            "embodiment": emb, "instruction": instruction, "horizon": cfg.horizon,
            "predicted": {k: v.tolist() for k, v in pred.items()},
            "recorded": {k: [r if r is not None else [None] * len(pred[k][0]) for r in v] for k, v in recorded.items()},
            "units": {k: units.get(k, "") for k in pred}, "mean_abs_error": float(np.mean(errs)) if errs else float("nan")}
