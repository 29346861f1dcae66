"""MediaPipe Hands (optional extra) throughput on CPU, on the real EPIC frames (456x256), video mode.

    <venv with vlaflow[hands]>/bin/python benchmarks/hands2d.py [--repeat 50]

Note: these frames hold no hand, so every frame runs the palm detector (no landmark tracking to reuse);
frames with tracked hands run the landmark model instead and skip detection while tracking holds.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vlaflow.converters.ego.hands2d import MediaPipeHands

FRAMES = Path(os.environ.get("VLAFLOW_SHARED", Path(__file__).resolve().parents[2] / "shared")) / \
    "fixtures/ego/epic_fields_frames/P28_101"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(FRAMES.glob("frame_*.jpg"))]
    for complexity in (0, 1):
        for scale in (1, 2):
            imgs = [np.asarray(Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale))) for f in frames]
            tracker = MediaPipeHands(model_complexity=complexity)
            tracker.add(imgs[0])  # graph start-up
            t = time.perf_counter()
            for _ in range(args.repeat):
                for f in imgs:
                    tracker.add(f)
            dt = time.perf_counter() - t
            tracker.close()
            n = args.repeat * len(imgs)
            print(f"model_complexity={complexity} {imgs[0].shape[1]}x{imgs[0].shape[0]}: {n / dt:7.1f} frames/s "
                  f"({sum(tracker.valid['left']) + sum(tracker.valid['right'])} hands found)")


if __name__ == "__main__":
    main()
