"""Write the ``lerobot`` converter's test fixtures with LeRobot's own writer (run in a LeRobot environment).

    /work/lerobot-venv/bin/python scripts/make_lerobot_fixtures.py tests/fixtures/lerobot

Each fixture is a LeRobot v3.0 folder made by ``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` /
``finalize``, plus ``expected.json``: the exact values handed to ``add_frame`` (actions, states, tasks) and
the mean of every frame per camera, so a test checks the converter against what went in, not against
LeRobot's files read back by our own code. The data is synthetic and ours (smooth joint trajectories,
gradient frames with a moving square), kept tiny (< 1 MB in all):

- ``so100_images``: robot_type ``so100_follower``, 3 episodes x 6 frames at 30 fps, ``*.pos`` motor names
  in degrees (gripper 0..100), two ``image`` cameras (front, wrist; PNG bytes in the parquet), two tasks;
- ``aloha_video``: robot_type ``aloha``, 2 episodes x 10 frames at 50 fps, 14 motors named as LeRobot's
  ALOHA ports (``{"motors": [...]}``), one ``video`` camera (top; LeRobot's default codec, several episodes
  in one MP4);
- ``custom_arm``: robot_type ``my_custom_arm`` (no spec: raw + generic), 2 episodes x 4 frames, 3-D action,
  no state, one image camera.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

SO100 = ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos", "gripper.pos"]
ALOHA_JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper"]
ALOHA = [f"{side}_{j}" for side in ("left", "right") for j in ALOHA_JOINTS]


def frame(h: int, w: int, ep: int, t: int, cam: int) -> np.ndarray:
    """A smooth gradient with a bright square whose place encodes (episode, step, camera)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)),
                    np.full_like(x, 40 * cam + 20 * ep)], axis=-1).astype(np.uint8)
    s = max(h // 6, 2)
    r0 = (3 * t + 5 * ep) % (h - s)
    c0 = (4 * t + 7 * cam) % (w - s)
    img[r0:r0 + s, c0:c0 + s] = 255
    return img


def joints(n: int, dims: int, ep: int, scale: float, offset: float = 0.0) -> np.ndarray:
    t = np.arange(n)[:, None]
    j = np.arange(dims)[None, :]
    return (offset + scale * np.sin(0.3 * t + j + ep)).astype(np.float32)


def build(root: Path, name: str, robot_type: str, fps: int, features: dict, episodes: list[dict], use_videos: bool):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    folder = root / name
    if folder.exists():
        shutil.rmtree(folder)
    ds = LeRobotDataset.create(repo_id=f"vlaflow/{name}", fps=fps, features=features, root=folder,
                               robot_type=robot_type, use_videos=use_videos)
    expected = {"robot_type": robot_type, "fps": fps, "episodes": []}
    for ep in episodes:
        n = ep["length"]
        cams = {k: [ep["frame"](t, ci) for t in range(n)] for ci, k in enumerate(ep["cameras"])}
        for t in range(n):
            fr = {"task": ep["tasks"][t]}
            for k in ("action", "observation.state"):
                if k in ep:
                    fr[k] = ep[k][t]
            for k, frames in cams.items():
                fr[k] = frames[t]
            ds.add_frame(fr)
        ds.save_episode()
        expected["episodes"].append({
            "length": n, "tasks": ep["tasks"],
            **{k: ep[k].tolist() for k in ("action", "observation.state") if k in ep},
            "frame_means": {k: [float(f.mean()) for f in frames] for k, frames in cams.items()},
        })
    ds.finalize()
    (folder / "expected.json").write_text(json.dumps(expected, indent=1))
    # LeRobot keeps per-episode image PNGs it has embedded into the parquet under images/: not part of the dataset
    shutil.rmtree(folder / "images", ignore_errors=True)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    vec = lambda names: {"dtype": "float32", "shape": (len(names),), "names": names}  # noqa: E731
    img = lambda h, w, kind: {"dtype": kind, "shape": (h, w, 3), "names": ["height", "width", "channels"]}  # noqa: E731

    # SO-100, images in the parquet
    eps = []
    for e in range(3):
        n = 6
        act = np.concatenate([joints(n, 5, e, 30.0), joints(n, 1, e, 40.0, 50.0)], axis=1)
        state = np.concatenate([joints(n, 5, e + 0.1, 30.0), joints(n, 1, e + 0.1, 40.0, 50.0)], axis=1)
        task = "pick up the red cube" if e != 1 else "put the cube in the bowl"
        eps.append({"length": n, "action": act, "observation.state": state, "tasks": [task] * n,
                    "cameras": ["observation.images.front", "observation.images.wrist"],
                    "frame": (lambda t, c, e=e: frame(24, 32, e, t, c))})
    build(args.out, "so100_images", "so100_follower", 30,
          {"action": vec(SO100), "observation.state": vec(SO100), "observation.images.front": img(24, 32, "image"),
           "observation.images.wrist": img(24, 32, "image")}, eps, use_videos=False)

    # ALOHA, one video camera, several episodes per MP4
    eps = []
    for e in range(2):
        n = 10
        act = joints(n, 14, e, 0.5)
        act[:, [6, 13]] = (0.5 + 0.4 * np.sin(0.2 * np.arange(n) + e))[:, None]
        state = joints(n, 14, e + 0.2, 0.5)
        state[:, [6, 13]] = (0.5 + 0.4 * np.cos(0.2 * np.arange(n) + e))[:, None]
        eps.append({"length": n, "action": act, "observation.state": state,
                    "tasks": ["transfer the cube to the other arm"] * n, "cameras": ["observation.images.top"],
                    "frame": (lambda t, c, e=e: frame(64, 64, e, t, c))})
    motors = {"dtype": "float32", "shape": (14,), "names": {"motors": ALOHA}}
    build(args.out, "aloha_video", "aloha", 50,
          {"action": motors, "observation.state": dict(motors), "observation.images.top": img(64, 64, "video")},
          eps, use_videos=True)

    # Unknown robot: raw only
    eps = []
    for e in range(2):
        n = 4
        eps.append({"length": n, "action": joints(n, 3, e, 1.0), "tasks": ["wave"] * n,
                    "cameras": ["observation.images.cam"], "frame": (lambda t, c, e=e: frame(16, 16, e, t, c))})
    build(args.out, "custom_arm", "my_custom_arm", 10,
          {"action": vec(["a", "b", "c"]), "observation.images.cam": img(16, 16, "image")}, eps, use_videos=False)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out}: {total / 1e3:.1f} kB")


if __name__ == "__main__":
    main()
