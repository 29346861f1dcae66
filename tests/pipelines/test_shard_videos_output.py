"""The output side of shard MP4s: where they live, no leftovers on abort, ``validate --images`` on them."""
import os
from fractions import Fraction

import numpy as np
import pytest

from vlaflow.media import ClipEncoder, FrameReader
from vlaflow.pipelines.layout import video_path
from vlaflow.pipelines.shard_writer import ShardWriter
from vlaflow.pipelines.storage import Output
from vlaflow.schemas import VideoClip, step_schema


def _clip(values):
    enc = ClipEncoder(Fraction(10), "h264", 4)
    for v in values:
        enc.add(np.full((48, 64, 3), v, np.uint8))
    return VideoClip(frame_index=np.arange(len(values), dtype=np.int32), data=enc.finish())


def test_video_path_mirrors_the_shard():
    assert video_path("data/ego/train/chunk-000/shard-00003.parquet", "primary") == \
        "videos/ego/train/chunk-000/shard-00003.primary.mp4"
    assert video_path("data/ego/train/chunk-000/shard-00003.parquet", "wrist", 2).endswith("shard-00003.wrist.2.mp4")


def test_abort_leaves_nothing_and_unsafe_paths_are_refused(tmp_path):
    w = ShardWriter(Output(str(tmp_path)), "data/x/train/chunk-000/shard-00000.parquet", step_schema())
    ref = w.videos.append("primary", _clip([10, 20]))
    assert ref.path == "videos/x/train/chunk-000/shard-00000.primary.mp4"
    tmpdir = w.videos.tmpdir
    w.abort()
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.mp4"))
    assert not os.path.exists(tmpdir)
    reader = FrameReader(str(tmp_path))
    for bad in ("../outside.mp4", "/etc/passwd", "videos/../../x.mp4"):
        with pytest.raises(ValueError, match="inside the output"):
            reader.read(bad, [0])


def test_validate_images_decodes_shard_videos(tmp_path):
    from vlaflow.pipelines.validate import _check_video

    out = Output(str(tmp_path))
    w = ShardWriter(out, "data/x/train/chunk-000/shard-00000.parquet", step_schema())
    w.videos.append("primary", _clip([10, 20, 30]))
    (entry,) = w.close()["videos"]
    assert _check_video(out, entry) == []
    assert "3 frames, manifest says 4" in _check_video(out, {**entry, "frames": 4})[0]
    (tmp_path / entry["path"]).write_bytes((tmp_path / entry["path"]).read_bytes()[:200])
    assert _check_video(out, entry)  # truncated: named problem, no exception
