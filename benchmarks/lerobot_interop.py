"""LeRobot in and out: vlaflow's ``lerobot`` converter and ``export lerobot`` against LeRobot's own reader and
writer, on the same dataset.

    .venv/bin/python benchmarks/lerobot_interop.py [--episodes 10 --frames 100 --size 240x320] [--json out.json]

Needs a LeRobot environment (``--lerobot-python``, default /work/lerobot-venv/bin/python; benchmarks/README.md).
In one work folder (a tempdir unless ``--workdir``):

1. **LeRobot write** (LeRobot's interpreter): ``LeRobotDataset.create`` (so100_follower, two ``video``
   cameras, H.264 so both sides use one codec) + ``add_frame`` per frame + ``save_episode`` per episode +
   ``finalize``, from frames already in memory (a smooth gradient, moving squares and mild noise). Timed.
2. **vlaflow read**: ``run_ingest`` of that folder with ``--converter lerobot`` (local executor, this process):
   every frame decoded and stored as JPEG, every row checked and validated. Timed.
3. **LeRobot read** (LeRobot's interpreter): ``LeRobotDataset(root=...)[i]`` for every frame (torchcodec
   decoding, its default). Timed.
4. **vlaflow write**: ``export_lerobot(..., mode="video")`` of the ingested dataset (JPEG decode → H.264, gop 2
   as LeRobot) and ``mode="images"`` (the stored JPEG bytes, no re-encoding). Timed.
5. ``benchmarks/lerobot_check.py`` on both exports (LeRobot loads them; every frame checked). Not timed.

Prints frames/s per run and the ratios vlaflow / LeRobot for reading and for writing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------- LeRobot's side (its interpreter)
def _frame(h: int, w: int, ep: int, t: int, cam: int, rng):
    import numpy as np

    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255 // (w - 1)), (y * 255 // (h - 1)), np.full_like(x, 60 * cam + 10 * ep)], -1)
    s = h // 6
    r0, c0 = (5 * t + 7 * ep) % (h - s), (7 * t + 11 * cam) % (w - s)
    img[r0:r0 + s, c0:c0 + s] = 255
    return np.clip(img + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)


def lerobot_write(out: str, episodes: int, frames: int, h: int, w: int) -> dict:
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    names = ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos",
             "gripper.pos"]
    vec = {"dtype": "float32", "shape": (6,), "names": names}
    cam = {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]}
    rng = np.random.default_rng(0)
    data = [[[_frame(h, w, e, t, c, rng) for c in range(2)] for t in range(frames)] for e in range(episodes)]
    t0 = time.perf_counter()
    ds = LeRobotDataset.create(repo_id="bench/so100", fps=30, root=out, robot_type="so100_follower",
                               features={"action": vec, "observation.state": dict(vec),
                                         "observation.images.front": cam, "observation.images.wrist": dict(cam)},
                               use_videos=True, vcodec="h264")
    for e in range(episodes):
        for t in range(frames):
            q = (30 * np.sin(0.1 * t + np.arange(6) + e)).astype(np.float32)
            ds.add_frame({"action": q, "observation.state": q, "observation.images.front": data[e][t][0],
                          "observation.images.wrist": data[e][t][1], "task": "pick up the cube"})
        ds.save_episode()
    ds.finalize()
    return {"seconds": time.perf_counter() - t0, "frames": episodes * frames}


def lerobot_read(root: str) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    t0 = time.perf_counter()
    ds = LeRobotDataset("bench/so100", root=root)
    for i in range(len(ds)):
        ds[i]
    return {"seconds": time.perf_counter() - t0, "frames": len(ds), "backend": ds.video_backend}


# ------------------------------------------------------------------------- driver (the project's interpreter)
def _anchor(py: str, *args: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SVT_LOG": "1"}
    out = subprocess.run([py, __file__, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--frames", type=int, default=100, help="frames per episode")
    ap.add_argument("--size", default="240x320", help="HxW of both cameras")
    ap.add_argument("--lerobot-python", default="/work/lerobot-venv/bin/python")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--anchor", choices=["write", "read"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    if args.anchor == "write":
        print(json.dumps(lerobot_write(args.path, args.episodes, args.frames, h, w)))
        return 0
    if args.anchor == "read":
        print(json.dumps(lerobot_read(args.path)))
        return 0
    if not Path(args.lerobot_python).exists():
        print(f"skip: no LeRobot interpreter at {args.lerobot_python} (benchmarks/README.md)")
        return 0
    from vlaflow.pipelines.export_lerobot import export_lerobot
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest

    work = Path(args.workdir or tempfile.mkdtemp(prefix="lerobot_bench_"))
    src, corpus = work / "src_lerobot", work / "corpus"
    n = args.episodes * args.frames
    res: dict = {"episodes": args.episodes, "frames": n, "cameras": 2, "size": [h, w]}
    res["lerobot_write"] = _anchor(args.lerobot_python, "--anchor", "write", "--path", str(src),
                                   "--episodes", str(args.episodes), "--frames", str(args.frames), "--size", args.size)
    t0 = time.perf_counter()
    r = run_ingest(IngestConfig("lerobot", str(src), str(corpus), executor="local"))
    res["vlaflow_read"] = {"seconds": time.perf_counter() - t0, "frames": r.ledger["steps_out"]}
    assert r.ledger["steps_out"] == n and r.ledger["balanced"], r.ledger
    res["lerobot_read"] = _anchor(args.lerobot_python, "--anchor", "read", "--path", str(src))
    for mode in ("video", "images"):
        t0 = time.perf_counter()
        export_lerobot(str(corpus), "src_lerobot", str(work / f"export_{mode}"), mode=mode, overwrite=True)
        res[f"vlaflow_write_{mode}"] = {"seconds": time.perf_counter() - t0, "frames": n}
    check = subprocess.run([args.lerobot_python, str(REPO / "benchmarks/lerobot_check.py"), str(work / "export_video"),
                            str(work / "export_images")], capture_output=True, text=True)
    res["lerobot_check"] = "ok" if check.returncode == 0 else check.stdout[-500:] + check.stderr[-500:]
    for k, v in res.items():
        if isinstance(v, dict) and "seconds" in v:
            v["frames_per_s"] = round(v["frames"] / v["seconds"], 1)
    res["ratio_read"] = round(res["vlaflow_read"]["frames_per_s"] / res["lerobot_read"]["frames_per_s"], 2)
    res["ratio_write_video"] = round(res["vlaflow_write_video"]["frames_per_s"]
                                     / res["lerobot_write"]["frames_per_s"], 2)
    print(f"{n} frames x 2 cameras {h}x{w} ({args.episodes} episodes)")
    for k in ("lerobot_write", "vlaflow_read", "lerobot_read", "vlaflow_write_video", "vlaflow_write_images"):
        print(f"  {k:22s} {res[k]['frames_per_s']:>9.1f} frames/s  ({res[k]['seconds']:.1f} s)")
    print(f"  read  vlaflow / LeRobot: {res['ratio_read']}x   write (H.264) vlaflow / LeRobot: "
          f"{res['ratio_write_video']}x   LeRobot loads both exports: {res['lerobot_check']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0 if res["lerobot_check"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
