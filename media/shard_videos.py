"""Frames stored as video: a shard's episode clips are remuxed (not re-encoded) into one MP4 per camera.

Every clip is an MP4 with one frame per step and no B-frames (``video.ClipEncoder``);
appending one copies its packets with their timestamps moved past the file's end, so an episode's
frame ``i`` becomes file frame ``offset + i``. A clip whose codec or size differs from the open file
starts the next file (``.1.mp4``). Files are written to a local temporary file (MP4 needs a seekable
output) and moved into place on ``close``, so a video exists whole or not at all.
"""
from __future__ import annotations

import hashlib
import io
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pyarrow.fs as pafs

from vlaflow.schemas import VideoClip


class _File:
    def __init__(self, rel: str, template, local_dir: str):
        import av

        self.rel = rel
        self.local = os.path.join(local_dir, rel.replace("/", "_"))
        self.container = av.open(self.local, "w", format="mp4")
        self.stream = self.container.add_stream_from_template(template, opaque=True)  # remux: no codec needed
        self.key = _key(template)
        self.frames = 0
        self.end = None  # next free pts, in the first clip's time base
        self.time_base = Fraction(template.time_base)


def _key(stream) -> tuple:
    cc = stream.codec_context
    return (cc.name, cc.width, cc.height, str(cc.pix_fmt), Fraction(stream.time_base))


class ShardVideos:
    """Per camera role, the MP4 files of one shard: ``path_for(role, part)`` names them relative to ``root``
    on ``fs`` (the output's layout is the caller's)."""

    def __init__(self, fs: pafs.FileSystem, root: str, path_for: Callable[[str, int], str]):
        self.fs, self.root, self.path_for = fs, root, path_for
        self.tmpdir = tempfile.mkdtemp(prefix="vlaflow-video-")
        self.files: dict[str, list[_File]] = {}

    def append(self, role: str, clip: VideoClip) -> VideoClip:
        """Copy ``clip`` into the role's current file; returns the clip pointing at it."""
        import av

        src = av.open(io.BytesIO(clip.data))
        try:
            ist = src.streams.video[0]
            files = self.files.setdefault(role, [])
            if not files or files[-1].key != _key(ist):
                files.append(_File(self.path_for(role, len(files)), ist, self.tmpdir))
            f = files[-1]
            shift = 0 if f.end is None else f.end
            count, end, prev = 0, shift, None
            for pkt in src.demux(ist):
                if pkt.dts is None:
                    continue
                if count == 0 and pkt.dts < 0:
                    raise ValueError("clip starts with a negative dts (B-frames?); encode clips with ClipEncoder")
                pkt.pts += shift
                pkt.dts += shift
                # a packet without a duration (some encoders) still occupies one frame period
                step = pkt.duration or (pkt.pts - prev if prev is not None and pkt.pts > prev else 1)
                prev = pkt.pts
                end = max(end, pkt.pts + step)
                pkt.stream = f.stream
                f.container.mux(pkt)
                count += 1
        finally:
            src.close()
        local = np.asarray(clip.frame_index, np.int64)
        if count == 0 or local.max(initial=0) >= count:
            raise ValueError(f"clip has {count} frames but steps point at frame {int(local.max(initial=0))}")
        offset = f.frames
        f.frames += count
        f.end = end
        return VideoClip(frame_index=(local + offset).astype(np.int32), path=f.rel)

    def close(self) -> list[dict]:
        """Finish every file, move it into the output; returns manifest entries."""
        entries = []
        try:
            for role, files in sorted(self.files.items()):
                for f in files:
                    f.container.close()
                    h = hashlib.sha256()
                    with open(f.local, "rb") as fh:
                        for chunk in iter(lambda: fh.read(1 << 20), b""):
                            h.update(chunk)
                    size = os.path.getsize(f.local)
                    dst_path = posixpath.join(self.root, f.rel)
                    self.fs.create_dir(posixpath.dirname(dst_path), recursive=True)
                    with open(f.local, "rb") as src, self.fs.open_output_stream(dst_path + ".tmp") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    self.fs.move(dst_path + ".tmp", dst_path)
                    entries.append({"path": f.rel, "role": role, "frames": f.frames, "bytes": size,
                                    "sha256": h.hexdigest(), "codec": f.key[0], "width": f.key[1],
                                    "height": f.key[2]})
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        return entries

    def abort(self) -> None:
        for files in self.files.values():
            for f in files:
                try:
                    f.container.close()
                except Exception:
                    pass
        shutil.rmtree(self.tmpdir, ignore_errors=True)
