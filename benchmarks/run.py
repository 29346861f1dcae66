"""Every benchmark at a small size, one table of ratios against the anchors measured in the same run.

    .venv/bin/python -m benchmarks            # small: a few minutes on 2 cores
    .venv/bin/python -m benchmarks --size tiny  # smoke (CI): seconds per benchmark, numbers not meaningful
    .venv/bin/python -m benchmarks --size full  # the sizes the README table was measured at
    .venv/bin/python -m benchmarks --only ingest,stats --json out.json

Each benchmark runs as its own subprocess (its own interpreter, so one's imports and Ray never colour
another's) and writes JSON; an anchor whose environment is absent (TensorFlow or LeRobot venvs, see
benchmarks/README.md) is reported as skipped with the reason its benchmark gave. Never a threshold: the table states what was
measured, where and when; the exit status is 1 only when a benchmark crashed (CI runs ``--size tiny`` as a smoke test).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    args: dict  # size -> extra arguments
    json_flag: str = "--json"


BENCHES = [
    Bench("ingest", "ingest_rlds.py", {
        "tiny": ["--scale", "1", "--shards", "2", "--no-rss-growth", "--lerobot-steps", "50"],
        "small": ["--scale", "4", "--shards", "4", "--growth-factor", "5", "--lerobot-steps", "200"],
        "full": []}),
    Bench("stats", "stats.py", {
        "tiny": ["--steps", "2000", "--shards", "2"], "small": ["--steps", "100000", "--shards", "8"], "full": []}),
    Bench("workers", "workers.py", {
        "tiny": ["--episodes", "4", "--factor", "2"], "small": ["--episodes", "40", "--factor", "10"],
        "full": ["--episodes", "100", "--factor", "10"]}),
    Bench("features", "features.py", {
        "tiny": ["--size", "tiny", "--episodes", "1", "--steps", "4"], "small": ["--size", "tiny", "--mp4"],
        "full": ["--size", "base", "--mp4"]}),
    Bench("train_feed", "train_feed.py", {"tiny": ["--size", "tiny"], "small": [], "full": ["--size", "full"]}),
]


def _get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def rows_of(name: str, r: dict) -> list[tuple[str, object, str]]:
    """(measure, value, what it is compared with) for one benchmark's JSON."""
    if name == "ingest":
        ratios = r.get("ratios", {})
        skipped = r.get("skipped", {})
        why = lambda k: f"skipped: {skipped[k]}" if k in skipped else ""  # noqa: E731
        return [
            ("ingest / TFDS read without decode, steps/s (wall)", _get(ratios, "vlaflow_over_tf_nodecode", "value"),
             why("tf") or "TFDS + tf.data, SkipDecoding"),
            ("ingest marginal / TFDS read without decode (growth run)",
             _get(ratios, "vlaflow_marginal_over_tf_nodecode_20x", "value"), why("tf") or why("rss_growth")),
            ("ingest / LeRobot conversion, steps/s", _get(ratios, "vlaflow_marginal_over_lerobot", "value")
             or _get(ratios, "vlaflow_over_lerobot", "value"), why("lerobot") or "LeRobotDataset.add_frame/save"),
            ("ingest output / source bytes", _get(ratios, "output_over_source_bytes", "value"), ""),
            (f"ingest peak RSS {r.get('growth_factor')}x / 1x", _get(ratios, "rss_growth_20x", "value"),
             why("rss_growth")),
        ]
    if name == "stats":
        return [("stats: LeRobot per-episode stats time / vlaflow (warm Ray)", r.get("speedup_warm"),
                 r.get("lerobot_impl") or r.get("lerobot_skipped", "")),
                ("stats: LeRobot / vlaflow in process", r.get("speedup_local"), ""),
                ("stats: max quantile rank error, vlaflow", r.get("max_rank_error_vlaflow"), "exact numpy")]
    if name == "workers":
        return [("ingest 2 / 1 Ray workers, marginal steps/s", r.get("ratio_2_over_1_workers"), "target ≥ 1.7"),
                ("small input: Ray wall / in-process (auto) wall", r.get("ratio_ray_over_auto_wall_1x"),
                 f"same bytes: {r.get('same_bytes_auto_vs_ray')}")]
    if name == "features":
        out = []
        for run in r.get("runs", []):
            out.append((f"features stage / bare encoder forward ({run['storage']}, {r.get('size')}, "
                        f"{r.get('device')})", run.get("ratio_stage_over_bare"), "same batch, same process"))
            out.append((f"features bytes/frame pooled ({run['storage']})", run.get("bytes_per_frame_pooled"), ""))
        return out
    if name == "train_feed":
        skipped, lr = r.get("skipped", {}), _get(r, "anchors", "lerobot_video") or {}
        where = f"B={r.get('batch_size')}, H={r.get('horizon')}, {r.get('image_size')}² frames"
        notes = {"dataloader": f"same shards in RAM, {r.get('dataloader_workers')} worker(s)",
                 "lerobot_video": f"LeRobot {lr.get('lerobot', '')} {lr.get('video_backend') or ''}, "
                                  f"{r.get('lerobot_workers')} workers, {where}",
                 "lerobot_images": f"LeRobot {lr.get('lerobot', '')}, {r.get('lerobot_workers')} workers, {where}",
                 "tf_data": f"TF {_get(r, 'anchors', 'tf_data', 'tf') or ''}, {where}"}
        return [(k, v["value"], f"skipped: {skipped[v['anchor']]}" if v["anchor"] in skipped
                 else notes.get(v["anchor"], v["anchor"])) for k, v in r.get("ratios", {}).items()]
    return []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("tiny", "small", "full"), default="small")
    ap.add_argument("--only", default="", help="comma list of: " + ",".join(b.name for b in BENCHES))
    ap.add_argument("--json", default=None, help="write every benchmark's JSON and the table here ('-' = stdout)")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    work = Path(tempfile.mkdtemp(prefix="vlaflow-benchmarks-"))
    results, table = {}, []
    for b in BENCHES:
        if only and b.name not in only:
            continue
        script = HERE / b.script
        if not script.exists():
            results[b.name] = {"skipped": f"{b.script} not present"}
            continue
        out = work / f"{b.name}.json"
        t0 = time.perf_counter()
        print(f"[{b.name}] {b.script} {' '.join(b.args[args.size])}", file=sys.stderr, flush=True)
        try:
            p = subprocess.run([sys.executable, str(script), *b.args[args.size], b.json_flag, str(out)],
                               capture_output=True, text=True, timeout=args.timeout)
            ok = out.exists()
            err = "" if ok else (p.stderr.strip().splitlines() or ["no output"])[-1][:300]
        except subprocess.TimeoutExpired:
            ok, err = False, f"timed out after {args.timeout:.0f} s"
        wall = time.perf_counter() - t0
        if not ok:
            results[b.name] = {"error": err, "wall_s": wall}
            table.append((b.name, None, f"failed: {err}"))
            continue
        r = json.loads(out.read_text())
        results[b.name] = {**r, "wall_s": wall}
        table.extend(rows_of(b.name, r))
    head = (f"vlaflow benchmarks, size {args.size}, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
            f"{_cpus()} CPUs, Python {platform.python_version()}")
    print("\n" + head)
    print(f"| {'measure':70s} | {'ratio / value':>13s} | anchor / note")
    print(f"|{'-' * 72}|{'-' * 15}|{'-' * 30}")
    for measure, value, note in table:
        v = "-" if value is None else (f"{value:.3g}" if isinstance(value, float) else str(value))
        print(f"| {measure:70s} | {v:>13s} | {note}")
    for name, r in results.items():
        if "skipped" in r and isinstance(r["skipped"], str):
            print(f"skipped {name}: {r['skipped']}")
    if args.json:
        text = json.dumps({"header": head, "table": table, "results": results}, indent=1, default=str)
        print(text) if args.json == "-" else Path(args.json).write_text(text)
    return 1 if any("error" in r for r in results.values()) else 0  # a crash, never a slow number, fails


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    raise SystemExit(main())
