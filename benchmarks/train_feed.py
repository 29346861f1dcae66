#!/usr/bin/env python
"""The training feed (``pipelines/train_data.py`` on Ray Data) against a plain ``torch.utils.data.DataLoader`` over
the same Parquet shards and feature shards, on the same machine, in samples/s.

1. Writes a sample RLDS dataset (``--episodes`` × ``--steps``), ingests it, computes ``stats.json`` and features with
   a random SigLIP of width ``--dim`` (768 = SigLIP-B's feature width), all in this process.
2. Runs, each for ``--batches`` batches of ``--batch-size`` after ``--warmup`` batches:
   (a) **vlaflow feed**: ``build_feed`` + ``ray_dataset`` (one read task per shard: chunks assembled inside
       episodes, normalized, features zipped) iterated with ``iter_torch_batches`` — once with the model's
       ``VLAProcessor`` collate (tokenized prompts, tensors: what a training step gets) and once as plain NumPy
       batches (``iter_batches``: the feed alone);
   (b) **DataLoader**: a map-style ``Dataset`` that holds the same shards and feature shards in memory as NumPy
       (read once, untimed) and builds one sample per ``__getitem__`` — chunk gathered inside the episode, masks,
       ``Normalizer`` per sample, as LeRobot/openpi transforms do — ``DataLoader(shuffle=True,
       num_workers=--workers)`` with the same ``VLAProcessor`` collate, and returning the list of samples.
3. Prints samples/s of each and the ratios vlaflow / DataLoader.

    .venv/bin/python benchmarks/train_feed.py                       # small: 60 episodes x 20 steps, D=768
    .venv/bin/python benchmarks/train_feed.py --size full --json out.json   # 200 episodes, 600 batches
    .venv/bin/python benchmarks/train_feed.py --size tiny           # smoke (CI)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


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
    """Samples/s over ``batches`` batches after ``warmup`` (the iterator's start-up is in the warm-up)."""
    it = iter(it)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += size(next(it))
    return n / (time.perf_counter() - t0)


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
    ap.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--workdir")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    for k, v in SIZES[a.size].items():
        if getattr(a, k) is None:
            setattr(a, k, v)

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
    print(f"corpus ready in {time.perf_counter() - t0:.1f} s: {root}", file=sys.stderr)
    cams = ["primary"]
    cfg = FeedConfig(corpus=str(root), horizon=a.horizon, cameras=cams, epochs=50)
    corpus, feed, schedule = build_feed(cfg)
    model = VLAModel(VLAConfig(horizon=a.horizon, vision_dim=a.dim, embodiments=["widowx_250"]))
    processor = model.processor()
    need = (a.warmup + a.batches) * a.batch_size
    if schedule.total < need:
        raise SystemExit(f"schedule of {schedule.total} samples < {need} needed; more --episodes")

    ray.init(address="local", num_cpus=a.num_cpus, object_store_memory=300 << 20, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    configure_data_context()
    res: dict = {"episodes": a.episodes, "steps": a.steps, "dim": a.dim, "horizon": a.horizon,
                 "batch_size": a.batch_size, "batches": a.batches, "num_cpus": a.num_cpus,
                 "dataloader_workers": a.workers}

    def bsize(b):
        return len(b["target"]) if isinstance(b, dict) else len(b)

    ds = ray_dataset(feed, schedule.items)
    res["vlaflow_feed_collated"] = _time(ds.iter_torch_batches(batch_size=a.batch_size, collate_fn=Collate(processor),
                                                               drop_last=True, prefetch_batches=2),
                                         a.warmup, a.batches, bsize)
    ds = ray_dataset(feed, schedule.items)
    res["vlaflow_feed_raw"] = _time(ds.iter_batches(batch_size=a.batch_size, batch_format="numpy", drop_last=True,
                                                    prefetch_batches=2), a.warmup, a.batches, bsize)
    ray.shutdown()

    base = StepDataset(root, a.horizon, cams)
    kw = dict(batch_size=a.batch_size, shuffle=True, drop_last=True, num_workers=a.workers,
              persistent_workers=a.workers > 0)
    res["dataloader_collated"] = _time(_cycle(torch.utils.data.DataLoader(base, collate_fn=processor, **kw)),
                                       a.warmup, a.batches, bsize)
    res["dataloader_raw"] = _time(_cycle(torch.utils.data.DataLoader(base, collate_fn=lambda x: x, **kw)),
                                  a.warmup, a.batches, bsize)
    res["ratio_collated"] = res["vlaflow_feed_collated"] / res["dataloader_collated"]
    res["ratio_raw"] = res["vlaflow_feed_raw"] / res["dataloader_raw"]
    res["size"] = a.size
    res["ratios"] = {"feed+collate over DataLoader+collate, samples/s": round(res["ratio_collated"], 3),
                     "feed (numpy) over DataLoader (in-memory), samples/s": round(res["ratio_raw"], 3)}
    for k in ("vlaflow_feed_collated", "dataloader_collated", "vlaflow_feed_raw", "dataloader_raw"):
        print(f"{k:24s} {res[k]:10.1f} samples/s")
    print(f"ratio vlaflow/DataLoader: {res['ratio_collated']:.2f}x with the VLAProcessor collate, "
          f"{res['ratio_raw']:.2f}x without")
    if a.json:
        text = json.dumps(res, indent=1, sort_keys=True)
        print(text) if a.json == "-" else Path(a.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
