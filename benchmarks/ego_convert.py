"""egodex converter throughput on generated EgoDex-style episodes (textured H.264 video, 30 fps → 10 Hz).

    .venv/bin/python benchmarks/ego_convert.py [--episodes 4] [--seconds 10] [--size 640x480]

Times ``converter.read`` in one process (what one Ray worker does per episode) for each decoder × storage
mode: episodes/s, sampled frames/s, output bytes per frame. Trajectory targets are included in every row.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vlaflow.converters.base import ConverterOptions
from vlaflow.converters.ego import EgoDexConverter
from vlaflow.converters.ego.egodex_synth import write_egodex_episode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--size", default="640x480")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    root = Path(tempfile.mkdtemp(prefix="vlaflow-bench-egodex-")) / "part1" / "task"
    t = time.perf_counter()
    for i in range(args.episodes):
        write_egodex_episode(root, i, n_frames=30 * args.seconds, width=w, height=h, seed=i, textured=True)
    print(f"generated {args.episodes} episodes × {args.seconds} s at 30 fps, {w}x{h} in {time.perf_counter() - t:.1f} s")
    for decoder in ("pyav", "decord"):
        for storage in ("jpeg", "mp4"):
            conv = EgoDexConverter(str(root.parent.parent), ConverterOptions(extra={"decoder": decoder, "storage": storage}))
            units = conv.work_units(1 << 30)
            t = time.perf_counter()
            eps = [ep for u in units for ep in conv.read(u)]
            dt = time.perf_counter() - t
            frames = sum(ep.length for ep in eps)
            size = sum(sum(len(b) for b in ep.images.get("primary") or []) +
                       sum(len(c.data) for c in ep.videos.values()) for ep in eps)
            print(f"  {decoder:6s} {storage:4s}: {len(eps) / dt:6.2f} episodes/s, {frames / dt:7.1f} frames/s, "
                  f"{size / frames / 1e3:6.1f} kB/frame")


if __name__ == "__main__":
    main()
