"""FrameReader on any filesystem the output can live on: a file:// URI and an fsspec memory:// store read the
same frames as the local folder, through pyarrow file objects; the decoder cache stays bounded."""
from fractions import Fraction

import numpy as np
import pytest

from vlaflow.media import ClipEncoder, FrameReader, ShardVideos, UndecodableVideo, encode_image, resolve
from vlaflow.schemas import VideoClip


def grey_clip(values):
    enc = ClipEncoder(Fraction(10), "h264", gop=2)
    for v in values:
        enc.add(np.full((48, 64, 3), v, np.uint8))
    return VideoClip(frame_index=np.arange(len(values), dtype=np.int32), data=enc.finish())


def write_videos(root: str) -> dict[str, VideoClip]:
    fs, base = resolve(root)
    store = ShardVideos(fs, base, lambda role, part: f"videos/d/shard-00000.{role}.mp4")
    refs = {"primary": store.append("primary", grey_clip([20, 60, 100, 140, 180])),
            "wrist": store.append("wrist", grey_clip([30, 90, 150]))}
    store.close()
    return refs


@pytest.fixture(params=["file", "memory"])
def root(request, tmp_path):
    if request.param == "file":
        return tmp_path.as_uri()
    pytest.importorskip("fsspec")
    return f"memory://vlaflow-reader-{tmp_path.name}/out"


def test_reads_frames_through_the_filesystem(root):
    refs = write_videos(root)
    reader = FrameReader(root)
    assert reader.local == root.startswith("file://")
    got = reader.read(refs["primary"].path, [4, 0, 2, 2])
    assert [int(round(f.mean())) for f in got] == pytest.approx([180, 20, 100, 100], abs=3)
    row = reader.frame(None, {"path": refs["wrist"].path, "frame_index": 1})
    assert abs(row.mean() - 90) < 3 and row.shape == (48, 64, 3)
    assert reader.index(refs["wrist"].path).num_frames == 3
    png = encode_image(np.full((8, 8, 3), 77, np.uint8), "png")
    assert reader.frame({"bytes": png, "path": None}, None).mean() == 77  # image bytes: no file involved
    reader.close()


def test_cache_is_bounded_and_closes_evicted_files(root):
    refs = write_videos(root)
    reader = FrameReader(root, cache=1)
    for role in ("primary", "wrist", "primary"):
        reader.read(refs[role].path, [0])
        assert len(reader._open) == 1
    (decoder, fh), = reader._open.values()
    reader.close()
    assert not reader._open and (fh is None or fh.closed)


def test_missing_or_foreign_paths(root):
    write_videos(root)
    reader = FrameReader(root)
    with pytest.raises(UndecodableVideo):
        reader.read("videos/d/nothing.mp4", [0])
    with pytest.raises(ValueError, match="inside the output"):
        reader.read("../x.mp4", [0])
    with pytest.raises(ValueError, match="no frame"):
        reader.frame(None, None)


def test_decord_needs_a_local_file(tmp_path):
    pytest.importorskip("fsspec")
    root = f"memory://vlaflow-decord-{tmp_path.name}/out"
    refs = write_videos(root)
    with pytest.raises(UndecodableVideo, match="local files"):
        FrameReader(root, backend="decord").read(refs["primary"].path, [0])
    local = write_videos(str(tmp_path))
    assert abs(FrameReader(str(tmp_path), backend="decord").read(local["primary"].path, [1])[0].mean() - 60) < 3
