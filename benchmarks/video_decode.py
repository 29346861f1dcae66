"""Video decode and frame-storage throughput: both decoders, both storage modes, on the same generated video.

    .venv/bin/python benchmarks/video_decode.py [--seconds 20] [--size 640x480] [--fps 30] [--rate 10]

Source: an H.264 MP4 with B-frames and a 2 s GOP (phone-like), textured moving content so codecs work.
Prints: (1) sampling decode to --rate Hz with PyAV (streaming) vs decord (get_batch), frames/s of
sampled frames; (2) storing the samples as JPEG vs as an MP4 clip (H.264 / AV1): encode frames/s and bytes
per frame; (3) loading: random single-frame reads and sequential reads from JPEG bytes vs shard MP4
(PyAV, decord), frames/s.
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from vlaflow.media import (ClipEncoder, DecordDecoder, FrameReader, PyAVDecoder, ShardVideos, encode_image, probe,
                           resolve, sample_indices)
from vlaflow.schemas import VideoClip


def make_source(path: Path, seconds: int, w: int, h: int, fps: int) -> None:
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h * 2, w * 2, 3), np.uint8)
    base = (base.astype(np.float32) * 0.5 + 64).astype(np.uint8)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps, options={"g": str(2 * fps), "bf": "2", "crf": "23", "preset": "veryfast"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(seconds * fps):
            x, y = (i * 3) % w, (i * 2) % h
            img = base[y:y + h, x:x + w].copy()
            img[h // 3:h // 3 + 40, (i * 5) % (w - 40):(i * 5) % (w - 40) + 40] = 255
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def timed(fn, repeat=1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--rate", type=int, default=10)
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="vlaflow-bench-video-"))
    src = tmp / "source.mp4"
    make_source(src, args.seconds, w, h, args.fps)
    t_probe, index = timed(lambda: probe(str(src)), 3)
    picks = sample_indices(index.timestamps_ns, Fraction(args.rate))
    n = len(picks)
    print(f"source: {index.num_frames} frames {w}x{h} @ {args.fps} fps, {src.stat().st_size / 1e6:.1f} MB; "
          f"probe (demux only) {t_probe * 1e3:.1f} ms; {n} samples at {args.rate} Hz")

    print("\n(1) sampling decode (frames/s of sampled frames, RGB out)")
    t_av, frames = timed(lambda: [a for _, a in PyAVDecoder(str(src), index).frames(picks)], 2)
    t_dec, frames_d = timed(lambda: [a for _, a in DecordDecoder(str(src), index).frames(picks)], 2)
    same = np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in zip(frames, frames_d)])
    t_all, _ = timed(lambda: sum(1 for _ in PyAVDecoder(str(src), index).frames(range(index.num_frames))), 1)
    print(f"  pyav   {n / t_av:8.1f} samples/s   (decodes every frame: {index.num_frames / t_all:.0f} frames/s)")
    print(f"  decord {n / t_dec:8.1f} samples/s   (ratio decord/pyav {t_av / t_dec:.2f}x; mean abs pixel diff {same:.2f})")
    sparse = picks[:: max(1, len(picks) // 20)]
    t_av_s, _ = timed(lambda: [a for _, a in PyAVDecoder(str(src), index).frames(sparse)], 2)
    t_dec_s, _ = timed(lambda: [a for _, a in DecordDecoder(str(src), index).frames(sparse)], 2)
    print(f"  sparse ({len(sparse)} samples over {args.seconds} s): pyav {len(sparse) / t_av_s:.1f}/s, "
          f"decord {len(sparse) / t_dec_s:.1f}/s")

    print("\n(2) storage: encode throughput and size per frame")
    t_jpg, jpgs = timed(lambda: [encode_image(a, "jpeg", 90) for a in frames], 2)
    print(f"  jpeg q90      {n / t_jpg:8.1f} frames/s  {np.mean([len(j) for j in jpgs]) / 1e3:7.1f} kB/frame")
    clips = {}
    for codec, gop in (("h264", 10), ("h264", 2), ("av1", 10)):
        def enc():
            e = ClipEncoder(Fraction(args.rate), codec, gop)
            for a in frames:
                e.add(a)
            return e.finish()
        t_enc, data = timed(enc, 1)
        clips[(codec, gop)] = data
        print(f"  {codec:4s} gop {gop:<3d}  {n / t_enc:8.1f} frames/s  {len(data) / n / 1e3:7.1f} kB/frame "
              f"({len(data) / sum(len(j) for j in jpgs):.3f}x JPEG bytes)")

    print("\n(3) loading (frames/s)")
    from PIL import Image

    rng = np.random.default_rng(1)
    order = rng.integers(0, n, args.reads)
    t, _ = timed(lambda: [np.asarray(Image.open(io.BytesIO(jpgs[i])).convert("RGB")) for i in order], 2)
    print(f"  jpeg bytes      random {args.reads / t:8.1f}   sequential {n / timed(lambda: [np.asarray(Image.open(io.BytesIO(j)).convert('RGB')) for j in jpgs], 2)[0]:8.1f}")
    for (codec, gop), data in clips.items():
        root = tmp / f"out-{codec}-{gop}"
        store = ShardVideos(*resolve(str(root)), lambda role, part: f"videos/b/shard-00000.{role}.{part}.mp4")
        ref = store.append("primary", VideoClip(frame_index=np.arange(n, dtype=np.int32), data=data))
        store.close()
        for backend in ("pyav", "decord"):
            if backend == "decord" and codec == "av1":
                print(f"  {codec} gop {gop:<3d} {backend:6s} (decord has no AV1 decoder)")
                continue
            reader = FrameReader(str(root), backend=backend)
            reader.index(ref.path)
            t_r, _ = timed(lambda: [reader.read(ref.path, [int(i)]) for i in order[:args.reads // 2]], 1)
            t_s, _ = timed(lambda: reader.read(ref.path, range(n)), 2)
            print(f"  {codec} gop {gop:<3d} {backend:6s} random {args.reads // 2 / t_r:8.1f}   sequential {n / t_s:8.1f}")


if __name__ == "__main__":
    main()
