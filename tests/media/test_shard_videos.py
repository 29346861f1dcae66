"""Shard MP4s: episode clips remuxed into one file per camera, frame references rebased, decoded back exactly."""
from fractions import Fraction

import numpy as np
import pytest

from vlaflow.media import ClipEncoder, FrameReader, ShardVideos, probe
from vlaflow.media.fs import resolve
from vlaflow.schemas import VideoClip


def flat_clip(values, size=(64, 48), codec="h264", gop=4):
    """A clip whose frame k is flat grey ``values[k]``: identity survives lossy coding (±3 levels)."""
    enc = ClipEncoder(Fraction(10), codec, gop)
    for v in values:
        enc.add(np.full((size[1], size[0], 3), v, np.uint8))
    return VideoClip(frame_index=np.arange(len(values), dtype=np.int32), data=enc.finish())


def store_at(root: str) -> ShardVideos:
    fs, base = resolve(root)
    return ShardVideos(fs, base, lambda role, part: f"videos/x/shard-00000.{role}{f'.{part}' if part else ''}.mp4")


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_clips_concatenate_and_decode_by_index(tmp_path, backend):
    store = store_at(str(tmp_path))
    a = store.append("primary", flat_clip([10, 20, 30, 40, 50]))
    b = store.append("primary", flat_clip([60, 70, 80]))
    c = store.append("primary", flat_clip([90, 100], size=(32, 32)))  # another size: next file
    entries = store.close()
    assert a.path == b.path != c.path and a.frame_index.tolist() == [0, 1, 2, 3, 4] and b.frame_index.tolist() == [5, 6, 7]
    assert c.frame_index.tolist() == [0, 1] and c.path.endswith(".primary.1.mp4")
    assert [e["frames"] for e in entries] == [8, 2] and all((tmp_path / e["path"]).exists() for e in entries)
    idx = probe(str(tmp_path / a.path))
    assert idx.num_frames == 8 and np.all(np.diff(idx.timestamps_ns) == 100_000_000)  # one clock across clips
    reader = FrameReader(str(tmp_path), backend=backend)
    frames = reader.read(a.path, [7, 0, 5, 4])
    assert [int(round(f.mean())) // 10 * 10 for f in frames] == [80, 10, 60, 50]
    (f,) = reader.read(c.path, [1])
    assert abs(f.mean() - 100) < 3 and f.shape == (32, 32, 3)
    row = reader.frame(None, {"path": b.path, "frame_index": int(b.frame_index[1])})
    assert abs(row.mean() - 70) < 3


def test_av1_clips(tmp_path):
    store = store_at(str(tmp_path))
    ref = store.append("primary", flat_clip([40, 120, 200], codec="av1", gop=2))
    store.close()
    got = FrameReader(str(tmp_path)).read(ref.path, [2, 1])
    assert abs(got[0].mean() - 200) < 4 and abs(got[1].mean() - 120) < 4


def test_clip_with_b_frames_is_refused(tmp_path):
    import av
    import io

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=10, options={"bf": "2", "g": "8"})
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        rng = np.random.default_rng(0)
        for i in range(8):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 255, (32, 32, 3), np.uint8), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    store = store_at(str(tmp_path))
    with pytest.raises(ValueError, match="B-frames"):
        store.append("primary", VideoClip(np.arange(8, dtype=np.int32), buf.getvalue()))
    store.abort()
