"""Scale-out on one machine: ``vlaflow ingest`` with 1 vs 2 Ray workers, and the start-up a small input pays.

Steady-state rates come from two input sizes (1x and ``--factor``x) per setting: the marginal steps/s
``(steps_big - steps_small) / (wall_big - wall_small)`` removes interpreter and Ray start-up, which a whole-run
rate would hide. The small-input fast path (``--executor auto`` → this process below 64 MB) is timed on the 1x
input against the Ray path; both write the same bytes (checked here).

    .venv/bin/python benchmarks/workers.py                # 1x = 40 episodes x 30 steps (~9 MB), 6x for the marginal
    .venv/bin/python benchmarks/workers.py --json -
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _vlaflow() -> list[str]:
    return [sys.executable, "-m", "vlaflow.pipelines.cli"]


def _ingest(src: Path, out: Path, *extra: str) -> float:
    env = {**os.environ, "RAY_ADDRESS": ""}
    t = time.perf_counter()
    r = subprocess.run([*_vlaflow(), "ingest", "--converter", "openx_rlds", "--input", str(src), "--output", str(out),
                        "--target-shard-mb", "0.5", *extra], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"ingest {extra} failed: {r.stderr[-500:]}")
    return wall


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=40, help="episodes per split of the 1x input")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--factor", type=int, default=6, help="size of the big input, in 1x units")
    ap.add_argument("--json", default=None, help="write the numbers as JSON ('-' = stdout)")
    args = ap.parse_args(argv)
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset

    work = Path(tempfile.mkdtemp(prefix="vlaflow-workers-"))
    small = write_sample_dataset(work / "s", episodes=args.episodes, steps=args.steps, shards=4)
    big = write_sample_dataset(work / "b", episodes=args.episodes * args.factor, steps=args.steps, shards=8)
    steps = {"small": 2 * args.episodes * args.steps, "big": 2 * args.episodes * args.factor * args.steps}
    report: dict = {"steps_1x": steps["small"], "steps_big": steps["big"],
                    "source_mb_1x": round(sum(p.stat().st_size for p in small.rglob("*")) / 1e6, 1)}
    for cpus in (1, 2):
        walls = {k: _ingest(src, work / f"out-{cpus}-{k}", "--executor", "ray", "--num-cpus", str(cpus))
                 for k, src in (("small", small), ("big", big))}
        dt = walls["big"] - walls["small"]  # noise can swallow a too small difference: then no marginal rate
        marginal = (steps["big"] - steps["small"]) / dt if dt > 0.5 else None
        report[f"ray_{cpus}_workers"] = {"wall_1x_s": round(walls["small"], 2), "wall_big_s": round(walls["big"], 2),
                                         "marginal_steps_per_s": round(marginal) if marginal else None}
        print(f"ray, {cpus} worker(s): 1x {walls['small']:.1f} s, {args.factor}x {walls['big']:.1f} s, "
              f"marginal {marginal or float('nan'):.0f} steps/s", file=sys.stderr)
    local = _ingest(small, work / "out-local", "--executor", "auto")
    report["auto_1x_wall_s"] = round(local, 2)
    report["same_bytes_auto_vs_ray"] = _digest(work / "out-local") == _digest(work / "out-2-small")
    one, two = (report[f"ray_{c}_workers"]["marginal_steps_per_s"] for c in (1, 2))
    report["ratio_2_over_1_workers"] = round(two / one, 2) if one and two else None
    report["ratio_ray_over_auto_wall_1x"] = round(report["ray_2_workers"]["wall_1x_s"] / local, 2)
    print(f"auto (in process) 1x: {local:.1f} s; same bytes as Ray: {report['same_bytes_auto_vs_ray']}",
          file=sys.stderr)
    if args.json:
        text = json.dumps(report, indent=1)
        print(text) if args.json == "-" else Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
