"""Shard MP4s: episode clips remuxed into one file per camera, frame references rebased, decoded back exactly."""
from fractions import Fraction

import numpy as np
import pytest

from vlaflow.converters.ego.video import ClipEncoder, probe
from vlaflow.pipelines.frames import FrameReader
from vlaflow.pipelines.layout import video_path
from vlaflow.pipelines.storage import Output
from vlaflow.pipelines.video_store import ShardVideos
from vlaflow.schemas import VideoClip


def _clip(values, size=(64, 48), codec="h264", gop=4):
    """A clip whose frame k is flat grey ``values[k]``: identity survives lossy coding (±3 levels)."""
    enc = ClipEncoder(Fraction(10), codec, gop)
    for v in values:
        enc.add(np.full((size[1], size[0], 3), v, np.uint8))
    return VideoClip(frame_index=np.arange(len(values), dtype=np.int32), data=enc.finish())


def test_video_path_mirrors_the_shard():
    assert video_path("data/ego/train/chunk-000/shard-00003.parquet", "primary") == \
        "videos/ego/train/chunk-000/shard-00003.primary.mp4"
    assert video_path("data/ego/train/chunk-000/shard-00003.parquet", "wrist", 2).endswith("shard-00003.wrist.2.mp4")


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_clips_concatenate_and_decode_by_index(tmp_path, backend):
    out = Output(str(tmp_path))
    store = ShardVideos(out, "data/ego/train/chunk-000/shard-00000.parquet")
    a = store.append("primary", _clip([10, 20, 30, 40, 50]))
    b = store.append("primary", _clip([60, 70, 80]))
    c = store.append("primary", _clip([90, 100], size=(32, 32)))  # another size: next file
    b.frame_index = b.frame_index  # rebased in place of the clip's local indices
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
    store = ShardVideos(Output(str(tmp_path)), "data/x/train/chunk-000/shard-00000.parquet")
    ref = store.append("primary", _clip([40, 120, 200], codec="av1", gop=2))
    store.close()
    got = FrameReader(str(tmp_path)).read(ref.path, [2, 1])
    assert abs(got[0].mean() - 200) < 4 and abs(got[1].mean() - 120) < 4


def test_abort_leaves_nothing_and_unsafe_paths_are_refused(tmp_path):


    from vlaflow.pipelines.shard_writer import ShardWriter
    from vlaflow.schemas import step_schema

    out = Output(str(tmp_path))
    w = ShardWriter(out, "data/x/train/chunk-000/shard-00000.parquet", step_schema())
    w.videos.append("primary", _clip([10, 20]))
    tmpdir = w.videos.tmpdir
    w.abort()
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.mp4"))
    import os

    assert not os.path.exists(tmpdir)
    reader = FrameReader(str(tmp_path))
    for bad in ("../outside.mp4", "/etc/passwd", "videos/../../x.mp4"):
        with pytest.raises(ValueError, match="inside the output"):
            reader.read(bad, [0])



def test_validate_images_decodes_shard_videos(tmp_path):
    from vlaflow.pipelines.validate import _check_video

    out = Output(str(tmp_path))
    store = ShardVideos(out, "data/x/train/chunk-000/shard-00000.parquet")
    store.append("primary", _clip([10, 20, 30]))
    (entry,) = store.close()
    assert _check_video(out, entry) == []
    assert "3 frames, manifest says 4" in _check_video(out, {**entry, "frames": 4})[0]
    (tmp_path / entry["path"]).write_bytes((tmp_path / entry["path"]).read_bytes()[:200])
    assert _check_video(out, entry)  # truncated: named problem, no exception
