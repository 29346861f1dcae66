"""Scale-out on one machine: ``vlaflow ingest`` with 1 vs 2 Ray workers, and the start-up a small input pays.

Scaling is measured on a warm Ray instance, one per worker count, in its own process: a first ingest starts the
worker processes (imports, converter set-up), then the 1x and the ``--factor``x inputs are ingested three times each
and timed by ``run_ingest`` alone (the fastest counts). The marginal steps/s ``(steps_big - steps_1x) / (t_big - t_1x)`` is the steady state; Ray's
start-up (5-20 s on 2 cores, and noisy) is kept out, since it would swamp a difference of seconds. Shards are
planned as a user's run plans them (``--target-shard-mb`` left at its default: 256 MB, shrunk to input/16 but never
below 16 MB), so a task is a real shard; ``--target-shard-mb 0.5`` instead makes tasks of ~10 ms of work and
measures Ray's per-task cost, not scaling.

The small-input fast path (``--executor auto`` → this process below 64 MB) is timed as a user meets it — the whole
``vlaflow ingest`` command, interpreter and Ray start-up included — on the 1x input against ``--executor ray``;
both write the same bytes (checked here).

    .venv/bin/python benchmarks/workers.py                # 1x = 40 episodes x 30 steps per split, 6x for the marginal
    .venv/bin/python benchmarks/workers.py --json -
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _vlaflow() -> list[str]:
    return [sys.executable, "-m", "vlaflow.pipelines.cli"]


def _ingest(src: Path, out: Path, *extra: str) -> float:
    """The whole command, as a user runs it."""
    env = {**os.environ, "RAY_ADDRESS": ""}
    t = time.perf_counter()
    r = subprocess.run([*_vlaflow(), "ingest", "--converter", "openx_rlds", "--input", str(src), "--output", str(out),
                        *extra], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"ingest {extra} failed: {r.stderr[-500:]}")
    return wall


def _warm(cpus: int, small: str, big: str, work: str, shard_mb: float | None) -> dict:
    """In this process: one Ray instance of ``cpus`` CPUs, a warm-up ingest, then the timed ones."""
    import ray

    from vlaflow.pipelines.ingest import IngestConfig, run_ingest

    ray.init(address="local", num_cpus=cpus, object_store_memory=256 << 20, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")
    kw = {"target_shard_mb": shard_mb} if shard_mb else {}

    def timed(src: str, name: str) -> tuple[float, int]:
        out = Path(work) / f"warm-{cpus}-{name}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        res = run_ingest(IngestConfig("openx_rlds", src, str(out), executor="ray", num_cpus=cpus, **kw))
        wall = time.perf_counter() - t
        return wall, len(res.manifest["shards"])

    timed(small, "warmup")
    # the fastest of three: a few-second run on 2 cores swings by ±0.5 s with whatever else wakes up
    (t1, n1), (tb, nb) = (min(timed(src, name) for _ in range(3)) for src, name in ((small, "1x"), (big, "big")))
    ray.shutdown()
    return {"wall_1x_s": round(t1, 3), "wall_big_s": round(tb, 3), "tasks_1x": n1, "tasks_big": nb}


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
    ap.add_argument("--target-shard-mb", type=float, default=None, help="default: the ingest's own planning")
    ap.add_argument("--json", default=None, help="write the numbers as JSON ('-' = stdout)")
    ap.add_argument("--warm", nargs=4, metavar=("CPUS", "SMALL", "BIG", "WORK"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.warm:  # the child process of one worker count
        cpus, small, big, work = args.warm
        print(json.dumps(_warm(int(cpus), small, big, work, args.target_shard_mb)))
        return 0
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset

    work = Path(tempfile.mkdtemp(prefix="vlaflow-workers-"))
    try:
        small = write_sample_dataset(work / "s", episodes=args.episodes, steps=args.steps, shards=4)
        big = write_sample_dataset(work / "b", episodes=args.episodes * args.factor, steps=args.steps, shards=8)
        report = measure(args, work, small, big)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        text = json.dumps(report, indent=1)
        print(text) if args.json == "-" else Path(args.json).write_text(text)
    return 0


def measure(args, work: Path, small: Path, big: Path) -> dict:
    steps = {"1x": 2 * args.episodes * args.steps, "big": 2 * args.episodes * args.factor * args.steps}
    report: dict = {"steps_1x": steps["1x"], "steps_big": steps["big"],
                    "source_mb_1x": round(sum(p.stat().st_size for p in small.rglob("*")) / 1e6, 1),
                    "source_mb_big": round(sum(p.stat().st_size for p in big.rglob("*")) / 1e6, 1)}
    shard = ["--target-shard-mb", str(args.target_shard_mb)] if args.target_shard_mb else []
    env = {**os.environ, "RAY_ADDRESS": ""}
    for cpus in (1, 2):
        r = subprocess.run([sys.executable, __file__, "--warm", str(cpus), str(small), str(big), str(work), *shard],
                           capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"warm run with {cpus} CPU(s) failed: {r.stderr[-800:]}")
        w = json.loads(r.stdout.strip().splitlines()[-1])
        dt = w["wall_big_s"] - w["wall_1x_s"]
        w["marginal_steps_per_s"] = round((steps["big"] - steps["1x"]) / dt) if dt > 0.2 else None
        w["big_steps_per_s"] = round(steps["big"] / w["wall_big_s"])
        report[f"ray_{cpus}_workers"] = w
        print(f"warm Ray, {cpus} worker(s): 1x {w['wall_1x_s']:.2f} s, {args.factor}x {w['wall_big_s']:.2f} s "
              f"({w['tasks_big']} shards), marginal {w['marginal_steps_per_s'] or float('nan'):.0f} steps/s",
              file=sys.stderr)
    one, two = (report[f"ray_{c}_workers"] for c in (1, 2))
    report["ratio_2_over_1_workers"] = (round(two["marginal_steps_per_s"] / one["marginal_steps_per_s"], 2)
                                        if one["marginal_steps_per_s"] and two["marginal_steps_per_s"] else None)
    report["ratio_2_over_1_workers_big_run"] = round(one["wall_big_s"] / two["wall_big_s"], 2)
    ray_wall = _ingest(small, work / "out-ray", "--executor", "ray", *shard)
    local = _ingest(small, work / "out-local", "--executor", "auto", *shard)
    report["ray_1x_wall_s"], report["auto_1x_wall_s"] = round(ray_wall, 2), round(local, 2)
    report["same_bytes_auto_vs_ray"] = _digest(work / "out-local") == _digest(work / "out-ray")
    report["ratio_ray_over_auto_wall_1x"] = round(ray_wall / local, 2)
    print(f"small input, whole command: Ray {ray_wall:.1f} s, auto (in process) {local:.1f} s; same bytes: "
          f"{report['same_bytes_auto_vs_ray']}", file=sys.stderr)
    return report


if __name__ == "__main__":
    raise SystemExit(main())
