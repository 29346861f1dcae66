#!/usr/bin/env python
"""The training feed (``pipelines/train_data.py`` on Ray Data) against a plain ``torch.utils.data.DataLoader`` over
the same Parquet shards and feature shards, ``DataLoader(LeRobotDataset)`` and tf.data the Octo/OpenVLA way, on the
same data in the same run, in samples/s, reported as ratios.

1. Writes a sample RLDS dataset (``--episodes`` × ``--steps`` per split, four 64×64 JPEG cameras), ingests it,
   computes ``stats.json`` and features with a random SigLIP of width ``--dim`` (768 = SigLIP-B's feature width),
   all in this process.
2. Runs, each for ``--batches`` batches of ``--batch-size`` after ``--warmup`` batches, one after the other:
   (a) **vlaflow feed**: ``build_feed`` + ``ray_dataset`` (one read task per shard: chunks assembled inside
       episodes, normalized, features zipped) iterated with ``iter_torch_batches`` — once with the model's
       ``VLAProcessor`` collate (tokenized prompts, tensors: what a training step gets) and once as plain NumPy
       batches (``iter_batches``: the feed alone);
   (a') the same feed in ``vision="encoder"`` mode, as the training job runs it: the read tasks decode the primary
       camera's JPEG bytes and apply the encoder's image processor (to ``--image-size``²), the batch carries
       ``pixel_values`` and the collate only stacks them — the same work the anchors below do per sample; and, for
       comparison, the earlier layout in which the bytes travel in the batch and the trainer's collate decodes them
       (``…_in_collate``);
   (b) **DataLoader**: a map-style ``Dataset`` that holds the same shards and feature shards in memory as NumPy
       (read once, untimed) and builds one sample per ``__getitem__`` — chunk gathered inside the episode, masks,
       ``Normalizer`` per sample, as LeRobot/openpi transforms do — ``DataLoader(shuffle=True,
       num_workers=--workers)`` with the same ``VLAProcessor`` collate, and returning the list of samples;
   (c) **DataLoader(LeRobotDataset)**, LeRobot's venv (``feed_anchors/lerobot_loader.py``), on the corpus exported
       with ``vlaflow export lerobot`` as MP4 video and as image bytes: action chunk of H through
       ``delta_timestamps``, the primary camera decoded and resized to ``--image-size``²;
   (d) **tf.data, Octo/dlimp**, TensorFlow's venv (``feed_anchors/tf_data.py``), on the RLDS directory the corpus
       was ingested from: episodes → normalize → ``chunk_act_obs`` (H) → frames → shuffle → decode + resize the
       primary camera to ``--image-size``² in a parallel map → batch.
3. Prints samples/s of each and the ratios vlaflow / anchor: the decoded-frames ratio (feed in encoder mode, frames
   decoded in its collate, against (c) and (d): the same work) and the encode-once ratio (feed in features mode,
   precomputed vision features and no decode, against (c) and (d): what skipping the per-step decode is worth to the
   feed; the encoder's forward pass the anchors' training would still run is not in any of these numbers).
   An anchor whose interpreter is missing is skipped with its reason (``--tf-python``, ``--lerobot-python``).

    .venv/bin/python benchmarks/train_feed.py                       # small: 60 episodes x 20 steps, D=768
    .venv/bin/python benchmarks/train_feed.py --size full --json out.json   # 200 episodes, 600 batches
    .venv/bin/python benchmarks/train_feed.py --size tiny           # smoke (CI)
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


HERE = Path(__file__).resolve().parent
DEFAULT_TF_PYTHON = Path("/work/bench-envs/tf/bin/python")
DEFAULT_LEROBOT_PYTHON = Path("/work/bench-envs/lerobot/bin/python")
SIZES = {"tiny": {"episodes": 6, "dim": 32, "batches": 4, "batch_size": 8, "warmup": 1},
         "small": {"episodes": 60, "dim": 768, "batches": 200, "batch_size": 32, "warmup": 5},
         "full": {"episodes": 200, "dim": 768, "batches": 600, "batch_size": 32, "warmup": 5}}


def build_corpus(work: Path, episodes: int, steps: int, dim: int) -> Path:
    import torch
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    from vlaflow.converters.openx_rlds.synth import write_sample_dataset
    from vlaflow.pipelines.features import run_features
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest
    from vlaflow.pipelines.stats import run_stats

    src = write_sample_dataset(work / "src", episodes=episodes, steps=steps, shards=4)
    root = work / "corpus"
    run_ingest(IngestConfig("openx_rlds", str(src), str(root), executor="local"))
    run_stats(str(root), executor="local")
    torch.manual_seed(0)
    enc = work / "encoder"
    SiglipVisionModel(SiglipVisionConfig(image_size=32, patch_size=8, hidden_size=dim, num_hidden_layers=1,
                                         num_attention_heads=12 if dim % 12 == 0 else 4, intermediate_size=64)).save_pretrained(enc)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(enc)
    run_features(str(root), str(enc), executor="local", batch_size=256)
    return root


class StepDataset:
    """The DataLoader baseline: every shard and feature shard in memory, one sample built per index."""

    def __init__(self, root: Path, horizon: int, cameras: list[str]):
        from vlaflow.pipelines.features import FeatureReader
        from vlaflow.pipelines.train_data import episode_bounds, load_stats
        from vlaflow.schemas.arrow import strings_to_numpy as _strings
        from vlaflow.schemas import ACTION, STATE, Col
        from vlaflow.schemas.arrow import fixed_to_numpy
        from vlaflow.tokenization.normalization import Normalizer

        fr = FeatureReader(str(root), "encoder")
        parts = [fr.shard(s["source"]) for s in fr.manifest["shards"]]
        import pyarrow as pa

        t = pa.concat_tables(parts)
        self.h, self.aw = horizon, ACTION.width
        self.action = fixed_to_numpy(t[Col.ACTION], ACTION.width, np.float32)
        self.amask = fixed_to_numpy(t[Col.ACTION_MASK], ACTION.width, bool)
        self.valid = t[Col.ACTION_VALID].to_numpy(zero_copy_only=False)
        self.state = fixed_to_numpy(t[Col.STATE], STATE.width, np.float32)
        self.smask = fixed_to_numpy(t[Col.STATE_MASK], STATE.width, bool)
        self.ends = episode_bounds(_strings(t[Col.EPISODE_ID]))
        self.strings = {k: _strings(t[c]) for k, c in (("dataset", Col.DATASET), ("embodiment", Col.EMBODIMENT),
                                                       ("task_family", Col.TASK_FAMILY),
                                                       ("instruction", Col.INSTRUCTION),
                                                       ("embodiment_prompt", Col.EMBODIMENT_PROMPT))}
        self.vision = np.stack([fr.arrays(t, r)[0] for r in cameras], 1)[:, :, None, :].astype(np.float16)
        self.vmask = np.stack([fr.arrays(t, r)[1] for r in cameras], 1)
        stats = load_stats(str(root))
        self.an, self.sn = Normalizer(stats, "quantile", "action"), Normalizer(stats, "quantile", "state")
        from vlaflow.schemas import TRAJECTORY

        self.tw = TRAJECTORY.width

    def __len__(self):
        return len(self.action)

    def __getitem__(self, i: int) -> dict:
        ds, emb = self.strings["dataset"][i], self.strings["embodiment"][i]
        idx = np.arange(i, i + self.h)
        inside = idx < self.ends[i]
        idx = np.where(inside, idx, i)
        chunk = self.an.normalize(self.action[idx], ds, emb)
        mask = inside[:, None] & self.amask[idx] & self.valid[idx][:, None]
        target = np.zeros((self.h, self.aw + self.tw), np.float32)
        tmask = np.zeros((self.h, self.aw + self.tw), bool)
        target[:, :self.aw] = np.where(mask, chunk, 0)
        tmask[:, :self.aw] = mask
        state = np.where(self.smask[i], self.sn.normalize(self.state[i], ds, emb), 0).astype(np.float32)
        return {**{k: str(v[i]) for k, v in self.strings.items()}, "state": state, "state_mask": self.smask[i],
                "target": target, "target_mask": tmask, "vision": self.vision[i], "vision_mask": self.vmask[i]}


def _cycle(loader):
    """A DataLoader's batches epoch after epoch (it holds one epoch of the steps; the feed's schedule holds 50)."""
    while True:
        yield from loader


def _time(it, warmup: int, batches: int, size) -> float:
    """Samples/s over ``batches`` batches after ``warmup`` (the iterator's start-up is in the warm-up). The iterator
    is closed after: a Ray Data iterator left open keeps prefetching, and touching Ray after ``ray.shutdown`` ends
    the process."""
    it = iter(it)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += size(next(it))
    rate = n / (time.perf_counter() - t0)
    getattr(it, "close", lambda: None)()
    return rate


def encoder_processor(work: Path, size: int, config: dict, tokenizer):
    """The ``VLAProcessor`` of a ``vision="encoder"`` model whose encoder's image processor resizes to ``size``²
    (the frozen encoder itself is never loaded: only its collate is timed)."""
    from transformers import SiglipImageProcessor, SiglipVisionConfig

    from vlaflow.models.vla import VLAConfig
    from vlaflow.models.vla.processor import VLAProcessor

    enc = work / f"encoder-{size}"
    if not (enc / "preprocessor_config.json").exists():
        SiglipVisionConfig(image_size=size).save_pretrained(enc)
        SiglipImageProcessor(size={"height": size, "width": size}).save_pretrained(enc)
    return VLAProcessor(VLAConfig(**config, vision="encoder", vision_encoder=str(enc)), tokenizer)


def run_anchor(python: Path, script: str, args: list, work: Path, timeout: float = 1800) -> dict:
    """One anchor script in its own interpreter; its last JSON line, or {"error": why}."""
    if not python.exists():
        return {"skipped": f"{python} not found (see benchmarks/README.md)"}
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled",
               HF_HOME=str(work / "hf_home"), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    try:
        p = subprocess.run([str(python), str(HERE / "feed_anchors" / script), *map(str, args)], capture_output=True,
                           text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": f"exit {p.returncode}: " + ((p.stderr.strip().splitlines() or ["no output"])[-1])[:300]}


def export_lerobot(root: Path, dataset: str, dest: Path, video: bool) -> float:
    """``vlaflow export lerobot`` (once, untimed for the feed comparison); returns its wall seconds."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vlaflow.pipelines.cli", "export", "lerobot", str(root), "--dataset", dataset,
                    "--to", str(dest), "--video" if video else "--images", "--overwrite"], check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=tuple(SIZES), default="small",
                    help="preset of --episodes/--dim/--batches (tiny: a smoke run, numbers not meaningful)")
    ap.add_argument("--episodes", type=int)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--dim", type=int)
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--batches", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--workers", type=int, default=1, help="DataLoader worker processes (the in-memory baseline)")
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=224,
                    help="decoded frames are resized to this square by every path that decodes (SigLIP/OpenVLA: 224)")
    ap.add_argument("--lerobot-workers", type=int, help="DataLoader(LeRobotDataset) workers (default --num-cpus)")
    ap.add_argument("--shuffle-buffer", type=int, default=10_000, help="tf.data anchor's shuffle buffer, frames")
    ap.add_argument("--tf-python", type=Path, default=DEFAULT_TF_PYTHON)
    ap.add_argument("--lerobot-python", type=Path, default=DEFAULT_LEROBOT_PYTHON)
    ap.add_argument("--workdir")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    for k, v in SIZES[a.size].items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.lerobot_workers = a.num_cpus if a.lerobot_workers is None else a.lerobot_workers

    import ray
    import torch

    from vlaflow.models.vla import VLAConfig, VLAModel
    from vlaflow.pipelines.ray_compat import configure_data_context
    from vlaflow.pipelines.train import Collate
    from vlaflow.pipelines.train_data import FeedConfig, build_feed, ray_dataset

    work = Path(a.workdir or tempfile.mkdtemp(prefix="vlaflow-feed-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    root = work / "corpus" if (work / "corpus/features/encoder/manifest.json").exists() else \
        build_corpus(work, a.episodes, a.steps, a.dim)
    src = work / "src/bridge_dataset/1.0.0"  # the RLDS the corpus was ingested from (write_sample_dataset)
    print(f"corpus ready in {time.perf_counter() - t0:.1f} s: {root}", file=sys.stderr)
    cams = ["primary"]
    cfg = FeedConfig(corpus=str(root), horizon=a.horizon, cameras=cams, epochs=50)
    corpus, feed, schedule = build_feed(cfg)
    model_cfg = dict(horizon=a.horizon, vision_dim=a.dim, embodiments=["widowx_250"])
    model = VLAModel(VLAConfig(**model_cfg))
    processor = model.processor()
    need = (a.warmup + a.batches) * a.batch_size
    if schedule.total < need:
        raise SystemExit(f"schedule of {schedule.total} samples < {need} needed; more --episodes")

    # encoder mode: same schedule (same corpus, mixture, seed), the primary camera's JPEG bytes instead of features
    _, enc_feed, enc_schedule = build_feed(FeedConfig(corpus=str(root), horizon=a.horizon, cameras=cams, epochs=50,
                                                      vision="encoder"))
    assert [i.shard for i in enc_schedule.items] == [i.shard for i in schedule.items]
    enc_processor = encoder_processor(work, a.image_size, model_cfg, processor.tokenizer)
    pre_feed = dataclasses.replace(enc_feed, image_processor=enc_processor.config.vision_encoder)  # the job's layout
    # its collate alone, one thread, on one read block, before Ray starts: what the collate costs without the
    # feed's threads beside it in this process (they share the GIL with it)
    block = {k: v[:a.batch_size] for k, v in enc_feed.read_item(enc_schedule.items[0]).items()}
    collate_alone = _time(map(Collate(enc_processor), itertools.repeat(block)), a.warmup, min(a.batches, 50),
                          lambda b: len(b["target"]))

    ray.init(address="local", num_cpus=a.num_cpus, object_store_memory=300 << 20, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    configure_data_context()
    res: dict = {"episodes": a.episodes, "steps": a.steps, "dim": a.dim, "horizon": a.horizon,
                 "batch_size": a.batch_size, "batches": a.batches, "num_cpus": a.num_cpus,
                 "dataloader_workers": a.workers, "lerobot_workers": a.lerobot_workers, "image_size": a.image_size,
                 "cameras_decoded": cams, "skipped": {}, "vlaflow_encoder_collate_alone": collate_alone}

    def bsize(b):
        return len(b["target"]) if isinstance(b, dict) else len(b)

    def feed_runs(feed, proc, tag):
        ds = ray_dataset(feed, schedule.items)
        res[f"{tag}_collated"] = _time(ds.iter_torch_batches(batch_size=a.batch_size, collate_fn=Collate(proc),
                                                             drop_last=True, prefetch_batches=2),
                                       a.warmup, a.batches, bsize)
        ds = ray_dataset(feed, schedule.items)
        res[f"{tag}_raw"] = _time(ds.iter_batches(batch_size=a.batch_size, batch_format="numpy", drop_last=True,
                                                  prefetch_batches=2), a.warmup, a.batches, bsize)

    feed_runs(feed, processor, "vlaflow_feed")
    feed_runs(pre_feed, enc_processor, "vlaflow_encoder")
    feed_runs(enc_feed, enc_processor, "vlaflow_encoder_in_collate")
    ray.shutdown()

    base = StepDataset(root, a.horizon, cams)
    kw = dict(batch_size=a.batch_size, shuffle=True, drop_last=True, num_workers=a.workers,
              persistent_workers=a.workers > 0)
    res["dataloader_collated"] = _time(_cycle(torch.utils.data.DataLoader(base, collate_fn=processor, **kw)),
                                       a.warmup, a.batches, bsize)
    res["dataloader_raw"] = _time(_cycle(torch.utils.data.DataLoader(base, collate_fn=lambda x: x, **kw)),
                                  a.warmup, a.batches, bsize)

    # the anchors, in their own interpreters, one after the other (Ray is down: nothing else runs)
    common = ["--horizon", a.horizon, "--batch-size", a.batch_size, "--batches", a.batches, "--warmup", a.warmup,
              "--image-size", a.image_size]
    anchors = {}
    for mode in ("video", "images"):
        out = work / f"lerobot-{mode}"
        export_s = export_lerobot(root, sorted(schedule.probabilities)[0], out, mode == "video") \
            if a.lerobot_python.exists() else None
        anchors[f"lerobot_{mode}"] = {**run_anchor(a.lerobot_python, "lerobot_loader.py",
                                                   [out, *common, "--workers", a.lerobot_workers], work),
                                      "export_s": export_s}
    anchors["tf_data"] = run_anchor(a.tf_python, "tf_data.py", [src, *common, "--shuffle-buffer", a.shuffle_buffer],
                                    work)
    res["anchors"] = anchors
    for name, r in anchors.items():
        if "samples_per_s" not in r:
            res["skipped"][name] = r.get("skipped") or f"failed: {r.get('error')}"

    def ratio(num, anchor):
        den = anchors[anchor].get("samples_per_s")
        return {"value": round(res[num] / den, 3) if den else None, "anchor": anchor}

    res["ratio_collated"] = res["vlaflow_feed_collated"] / res["dataloader_collated"]
    res["ratio_raw"] = res["vlaflow_feed_raw"] / res["dataloader_raw"]
    res["size"] = a.size
    res["ratios"] = {  # label -> {"value": vlaflow / anchor samples/s, "anchor": name}, in run.py's table as is
        "train feed + collate / in-memory DataLoader + collate": {"value": round(res["ratio_collated"], 3),
                                                                  "anchor": "dataloader"},
        "train feed (NumPy) / in-memory DataLoader (sample lists)": {"value": round(res["ratio_raw"], 3),
                                                                     "anchor": "dataloader"},
        "train feed, encoder mode, decoded / DataLoader(LeRobotDataset) MP4": ratio("vlaflow_encoder_collated",
                                                                                   "lerobot_video"),
        "train feed, encoder mode, decoded / DataLoader(LeRobotDataset) images": ratio("vlaflow_encoder_collated",
                                                                                      "lerobot_images"),
        "train feed, encoder mode, decoded / tf.data (Octo/dlimp)": ratio("vlaflow_encoder_collated", "tf_data"),
        "train feed, encoder mode: frames decoded in the read tasks / in the trainer's collate": {
            "value": round(res["vlaflow_encoder_collated"] / res["vlaflow_encoder_in_collate_collated"], 3),
            "anchor": "the same feed, decode in its collate"},
        "train feed, features (encode once) / DataLoader(LeRobotDataset) MP4": ratio("vlaflow_feed_collated",
                                                                                    "lerobot_video"),
        "train feed, features (encode once) / tf.data (Octo/dlimp)": ratio("vlaflow_feed_collated", "tf_data"),
    }
    for k in ("vlaflow_feed_collated", "dataloader_collated", "vlaflow_feed_raw", "dataloader_raw",
              "vlaflow_encoder_collated", "vlaflow_encoder_raw", "vlaflow_encoder_in_collate_collated",
              "vlaflow_encoder_in_collate_raw", "vlaflow_encoder_collate_alone"):
        print(f"{k:36s} {res[k]:10.1f} samples/s")
    for name, r in anchors.items():
        print(f"{name:28s} {r['samples_per_s']:10.1f} samples/s" if "samples_per_s" in r else
              f"{name:28s}    skipped: {res['skipped'][name]}")
    for label, r in res["ratios"].items():
        print(f"ratio {label}: " + ("-" if r["value"] is None else f"{r['value']:.2f}x"))
    if a.json:
        text = json.dumps(res, indent=1, default=str)
        print(text) if a.json == "-" else Path(a.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
