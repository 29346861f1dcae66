#!/usr/bin/env python
"""`vlaflow features` against the encoder's bare forward pass, same batch size, same process, same run.

1. Writes the sample RLDS dataset (`--episodes` per split x `--steps`, 4 cameras; the synthetic cameras show
   the same frame, so the stage encodes one frame per step and deduplicates the other three) and ingests it
   (`--executor local`), as image bytes and, with `--mp4`, as `--opt storage=mp4` too.
2. Builds a SigLIP vision tower from its config (`--size base` = siglip-base-patch16-224: 224², patch 16,
   768 wide, 12 layers; random weights, throughput only; `--size tiny` for a smoke run), saves it with its
   image processor and loads it through the real `from_pretrained` path.
3. Bare forward: the stage's own unique frames, decoded up front, through processor + forward in batches of
   `--batch-size` (`VisionEncoder.encode`), timed after one warm-up batch.
   Stage: the stage's task code (`encode_shard`: read columns, decode, hash, dedup, encode, write Parquet)
   over every shard with the same loaded encoder, as a pool actor runs it; and `run_features` end to end
   (`--executor`, encoder loads, manifest) for reference. Ratio = stage encoded frames/s over bare frames/s;
   frames-in/s counts the deduplicated frames too. Each rate is also given per CPU-second of this process
   (``time.process_time``, torch's threads included): on a shared machine wall time moves with the neighbours'
   load between the two passes, CPU time much less, so ``ratio_cpu_time`` is the steadier overhead figure.
4. Storage: bytes of the features files per frame-in (pooled only, and with `--tokens k`).

    .venv/bin/python benchmarks/features.py                      # base SigLIP, CPU
    .venv/bin/python benchmarks/features.py --device cuda --episodes 40 --steps 20 --batch-size 64
    .venv/bin/python benchmarks/features.py --size tiny --json -
    .venv/bin/python benchmarks/features.py --memory --episodes 75 --steps 20   # peak RSS of a task, --tokens 64

5. ``--memory``: peak RSS growth of one task (``encode_shard``, ``--tokens 64``, a wide tiny SigLIP: D = 512,
   64 KB of float16 tokens a frame) over one shard of ``--episodes`` x ``--steps`` distinct frames, each mode in
   its own process: no limits (what the stage did before: every distinct frame's tokens and the whole output row
   group at once), only the spill limit at 8 MB (the source's row groups: byte-identical to no limits), the
   default limits (64 MB spill, 64 MB output row groups) and 8 MB limits (the same rows in more row groups).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def build_siglip(path: Path, size: str) -> None:
    import torch
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    if size == "base":
        cfg = SiglipVisionConfig(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
                                 num_attention_heads=12, intermediate_size=3072)
        proc = SiglipImageProcessor(size={"height": 224, "width": 224})
    else:
        cfg = SiglipVisionConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=37)
        proc = SiglipImageProcessor(size={"height": 32, "width": 32})
    SiglipVisionModel(cfg).save_pretrained(path)
    proc.save_pretrained(path)


def unique_frames(out: Path) -> list[np.ndarray]:
    """The distinct frames the stage will encode (by bytes or decoded content), decoded once."""
    import hashlib

    from vlaflow.media import FrameReader

    reader = FrameReader(str(out))
    seen, frames = set(), []
    for shard in sorted(out.glob("data/**/*.parquet")):
        t = pq.read_table(shard, columns=["images", "videos"])
        for role in ("primary", "secondary", "tertiary", "wrist"):
            imgs = t["images"].combine_chunks().field(role).to_pylist()
            vids = t["videos"].combine_chunks().field(role).to_pylist()
            for i, v in zip(imgs, vids):
                if not ((i and i["bytes"]) or (v and v["path"])):
                    continue
                rgb = reader.frame(i, v)
                h = hashlib.sha256(rgb.tobytes()).digest()
                if h not in seen:
                    seen.add(h)
                    frames.append(rgb)
    return frames


def bare(encoder, frames: list[np.ndarray], batch: int) -> tuple[float, float]:
    """(frames/s of wall time, frames per CPU-second of this process)."""
    encoder.encode(frames[:batch])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(frames), batch):
        encoder.encode(frames[i:i + batch])
    if encoder.device != "cpu":
        import torch

        torch.cuda.synchronize()
    return len(frames) / (time.perf_counter() - t0), len(frames) / (time.process_time() - c0)


_MEMORY_TASK = """
import json, resource, sys
import numpy as np
from vlaflow.models import load_vision_encoder
from vlaflow.pipelines.features import encode_shard
a = json.loads(sys.argv[1])
enc = load_vision_encoder(a["model"], tokens=64)
enc.encode([np.zeros((64, 64, 3), np.uint8)] * 32)  # warm-up: the baseline includes torch's own buffers
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
m = encode_shard(a["out"], a["shard"], a["dest"], enc, 32, "float16", 64, spill_bytes=a["spill"],
                 row_group_bytes=a["row_group"])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_rss_growth_mb": round((peak - base) / 1024, 1), "sha256": m["sha256"],
                  "encoded": m["ledger"]["encoded"], "bytes": m["bytes"]}))
"""


def memory(args, work: Path) -> dict:
    """Peak RSS growth of one features task per memory mode, each in a fresh process."""
    import subprocess

    import torch
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    from vlaflow.converters import ConverterOptions
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest

    torch.manual_seed(0)
    model = work / "siglip-wide"
    SiglipVisionModel(SiglipVisionConfig(image_size=16, patch_size=4, hidden_size=512, num_hidden_layers=1,
                                         num_attention_heads=8, intermediate_size=128)).save_pretrained(model)
    SiglipImageProcessor(size={"height": 16, "width": 16}).save_pretrained(model)
    src = write_sample_dataset(work / "src-mem", episodes=args.episodes, steps=args.steps, shards=1)
    out = work / "mem"
    run_ingest(IngestConfig("openx_rlds", str(src), str(out), ConverterOptions(), executor="local"))
    shard = str(sorted(out.glob("data/**/*.parquet"))[0].relative_to(out))
    rows = pq.ParquetFile(out / shard).metadata.num_rows
    report = {"shard_rows": rows, "source_row_groups": pq.ParquetFile(out / shard).num_row_groups, "modes": []}
    for name, spill, rg in (("no limits (before)", 1 << 50, 1 << 50), ("spill 8 MB, source row groups", 8 << 20,
                            1 << 50), ("default limits (64 MB)", None, None), ("8 MB limits", 8 << 20, 8 << 20)):
        arg = {"model": str(model), "out": str(out), "shard": shard, "dest": f"mem-{len(report['modes'])}.parquet",
               "spill": spill, "row_group": rg}
        done = subprocess.run([sys.executable, "-c", _MEMORY_TASK, json.dumps(arg)], capture_output=True,
                              text=True, check=True)
        row = {"mode": name, **json.loads(done.stdout.strip().splitlines()[-1]),
               "row_groups": pq.ParquetFile(out / arg["dest"]).num_row_groups}
        row["distinct_token_mb"] = round(row["encoded"] * 64 * 512 * 2 / 2 ** 20, 1)
        report["modes"].append(row)
        print(json.dumps(row), file=sys.stderr)
    shas = [m["sha256"] for m in report["modes"]]
    report["spill_identical_to_before"] = shas[0] == shas[1]
    ref = pq.read_table(out / "mem-0.parquet")
    report["same_rows_in_every_mode"] = all(ref.equals(pq.read_table(out / f"mem-{i}.parquet")) for i in (2, 3))
    return report


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("base", "tiny"), default="base")
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--executor", default="local", help="local (same process as the bare pass) or ray")
    ap.add_argument("--mp4", action="store_true", help="also time an --opt storage=mp4 ingest")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None, help="write the numbers as JSON ('-' = stdout)")
    ap.add_argument("--memory", action="store_true", help="measure a task's peak RSS per memory mode instead")
    args = ap.parse_args(argv)
    if args.memory:
        work = Path(args.workdir or tempfile.mkdtemp(prefix="vlaflow-features-mem-"))
        report = memory(args, work)
        print(json.dumps(report, indent=1)) if args.json in (None, "-") else Path(args.json).write_text(json.dumps(report))
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        return report

    from vlaflow.converters import ConverterOptions
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset
    from vlaflow.models import load_vision_encoder
    from vlaflow.pipelines.features import encode_shard, run_features
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest

    work = Path(args.workdir or tempfile.mkdtemp(prefix="vlaflow-features-bench-"))
    src = write_sample_dataset(work / "src", episodes=args.episodes, steps=args.steps, shards=1)
    model = work / f"siglip-{args.size}"
    build_siglip(model, args.size)
    gpus = 1 if args.device != "cpu" else 0
    report = {"size": args.size, "device": args.device, "batch_size": args.batch_size, "runs": []}
    storages = [("images", {})] + ([("mp4", {"storage": "mp4"})] if args.mp4 else [])
    for name, opts in storages:
        out = work / name
        run_ingest(IngestConfig("openx_rlds", str(src), str(out), ConverterOptions(extra=opts), executor="local"))
        t0 = time.perf_counter()
        enc = load_vision_encoder(str(model), device=args.device)
        load_s = time.perf_counter() - t0
        frames = unique_frames(out)
        bare_fps, bare_cpu = bare(enc, frames, args.batch_size)
        # the stage's task code (what each pool actor runs per shard) with this loaded encoder, timed per task
        shards = sorted(str(p.relative_to(out)) for p in out.glob("data/**/*.parquet"))
        t0, c0 = time.perf_counter(), time.process_time()
        for sh in shards:
            encode_shard(str(out), sh, f"bench-tasks/{sh}", enc, args.batch_size, "float16", 0)
        encode_s, encode_cpu = time.perf_counter() - t0, time.process_time() - c0
        del enc
        res = run_features(str(out), str(model), batch_size=args.batch_size, executor=args.executor, num_gpus=gpus)
        led = res.ledger
        stage_s = res.seconds
        pooled_bytes = res.manifest["totals"]["bytes"]
        tok = run_features(str(out), str(model), tokens=args.tokens, batch_size=args.batch_size,
                           executor=args.executor, num_gpus=gpus, key=f"{model.name}-tokens{args.tokens}")
        row = {"storage": name, "unique_frames": len(frames), "frames_in": led["frames_in"],
               "encoded": led["encoded"], "deduplicated": led["deduplicated"], "encoder_load_s": round(load_s, 2),
               "bare_frames_per_s": round(bare_fps, 2), "tasks_s": round(encode_s, 2),
               "run_features_s": round(stage_s, 2),
               "run_features_encoded_frames_per_s": round(led["encoded"] / stage_s, 2),
               "stage_encoded_frames_per_s": round(led["encoded"] / encode_s, 2),
               "stage_frames_in_per_s": round(led["frames_in"] / encode_s, 2),
               "ratio_stage_over_bare": round(led["encoded"] / encode_s / bare_fps, 3),
               "bare_frames_per_cpu_s": round(bare_cpu, 2),
               "stage_encoded_frames_per_cpu_s": round(led["encoded"] / encode_cpu, 2),
               "ratio_cpu_time": round(led["encoded"] / encode_cpu / bare_cpu, 3),
               "bytes_per_frame_pooled": round(pooled_bytes / led["frames_in"], 1),
               f"bytes_per_frame_tokens{args.tokens}": round(tok.manifest["totals"]["bytes"] / led["frames_in"], 1),
               "dim": res.manifest["dim"]}
        report["runs"].append(row)
        print(json.dumps(row), file=sys.stderr)
    if args.json:
        text = json.dumps(report, indent=1)
        print(text) if args.json == "-" else Path(args.json).write_text(text)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
