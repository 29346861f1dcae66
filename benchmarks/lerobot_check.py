"""Does LeRobot load what ``vlaflow export lerobot`` wrote? Run in a LeRobot environment (not the project's):

    /work/lerobot-venv/bin/python benchmarks/lerobot_check.py DIR [DIR ...] [--json out.json]

For each exported folder: ``LeRobotDataset(repo_id, root=DIR)`` from LeRobot's own code (offline), then for
every frame ``ds[i]`` against the data parquet read with pyarrow: action and state values exactly, the task
string through ``meta/tasks.parquet``, episode and frame indices; camera frames against the stored image
bytes (decoded with PIL, exact) or, for videos, against the MP4 frame at ``from_timestamp * fps +
frame_index`` decoded with PyAV (so LeRobot's timestamp lookup must land on the right frame); and once an
action chunk through ``delta_timestamps`` (the way policies read it). Exits 1 on the first mismatch.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing file must fail here, not start a download

import numpy as np  # noqa: E402


def check(root: Path, chunk: int = 4) -> dict:
    import av
    import pandas as pd
    import pyarrow.parquet as pq
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from PIL import Image

    info = json.loads((root / "meta/info.json").read_text())
    t0 = time.perf_counter()
    ds = LeRobotDataset(f"vlaflow/{root.name}", root=root)
    load_s = time.perf_counter() - t0
    assert len(ds) == info["total_frames"], (len(ds), info["total_frames"])
    assert ds.num_episodes == info["total_episodes"], (ds.num_episodes, info["total_episodes"])
    data = pq.read_table(sorted((root / "data").glob("*/*.parquet"))).to_pylist()
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    task_of = {int(i): str(s) for s, i in zip(tasks.index, tasks["task_index"])}
    episodes = pq.read_table(sorted((root / "meta/episodes").glob("*/*.parquet"))).to_pylist()
    by_ep = {e["episode_index"]: e for e in episodes}
    fps = info["fps"]
    cams = [k for k, f in info["features"].items() if f["dtype"] in ("image", "video")]
    videos: dict[str, list[np.ndarray]] = {}
    worst = {"action": 0.0, "observation.state": 0.0, "image": 0.0, "video": 0.0}
    t1 = time.perf_counter()
    for i, row in enumerate(data):
        item = ds[i]
        for k in ("action", "observation.state"):
            if k in row:
                got = item[k].numpy()
                want = np.asarray(row[k], np.float32)
                worst[k] = max(worst[k], float(np.abs(got - want).max()))
                if not np.array_equal(got, want):
                    raise AssertionError(f"{root}: frame {i}: {k} {got} != {want}")
        assert int(item["episode_index"]) == row["episode_index"] and int(item["frame_index"]) == row["frame_index"]
        assert item["task"] == task_of[row["task_index"]], (item["task"], row["task_index"])
        ep = by_ep[row["episode_index"]]
        for k in cams:
            got = np.round(item[k].numpy().transpose(1, 2, 0) * 255).astype(np.int16)
            if info["features"][k]["dtype"] == "image":
                want = np.asarray(Image.open(io.BytesIO(row[k]["bytes"])).convert("RGB"), np.int16)
                worst["image"] = max(worst["image"], float(np.abs(got - want).max()))
                if not np.array_equal(got, want):
                    raise AssertionError(f"{root}: frame {i}: {k} differs from the stored image")
            else:
                rel = info["video_path"].format(video_key=k, chunk_index=ep[f"videos/{k}/chunk_index"],
                                                file_index=ep[f"videos/{k}/file_index"])
                if rel not in videos:
                    with av.open(str(root / rel)) as c:
                        videos[rel] = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
                j = int(round(ep[f"videos/{k}/from_timestamp"] * fps)) + row["frame_index"]
                want = videos[rel][j].astype(np.int16)
                err = float(np.abs(got - want).mean())
                worst["video"] = max(worst["video"], err)
                if err > 2.0:  # decoder color conversion may differ by a level; another frame differs by far more
                    raise AssertionError(f"{root}: frame {i}: {k} is not MP4 frame {j} (mean abs diff {err:.1f})")
    read_s = time.perf_counter() - t1
    # An action chunk the way policies ask for it
    dt = {"action": [n / fps for n in range(chunk)]}
    chunked = LeRobotDataset(f"vlaflow/{root.name}", root=root, delta_timestamps=dt)
    item = chunked[0]
    ep0 = [r for r in data if r["episode_index"] == data[0]["episode_index"]]
    want = np.asarray([ep0[min(n, len(ep0) - 1)]["action"] for n in range(chunk)], np.float32)
    if not np.array_equal(item["action"].numpy(), want):
        raise AssertionError(f"{root}: delta_timestamps action chunk differs")
    return {"root": str(root), "frames": len(ds), "episodes": ds.num_episodes, "cameras": cams,
            "load_s": round(load_s, 3), "read_frames_per_s": round(len(ds) / max(read_s, 1e-9), 1),
            "max_abs_error": worst, "action_chunk": chunk}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="+", type=Path)
    ap.add_argument("--json", default=None, help="write the results as JSON ('-' = stdout)")
    args = ap.parse_args()
    import lerobot

    results = []
    for root in args.roots:
        try:
            r = check(root)
        except AssertionError as err:
            print(f"FAIL {root}: {err}")
            return 1
        print(f"OK {root}: LeRobot {lerobot.__version__} loaded {r['episodes']} episodes / {r['frames']} frames "
              f"in {r['load_s']} s; every frame matches (max abs error {r['max_abs_error']}); cameras {r['cameras']}")
        results.append(r)
    if args.json:
        text = json.dumps({"lerobot": lerobot.__version__, "results": results}, indent=2)
        sys.stdout.write(text + "\n") if args.json == "-" else Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
