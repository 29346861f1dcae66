"""Loader side of frame storage: a row's camera → RGB array, whether stored as image bytes or video reference.

Video references are decoded by integer frame index (presentation order): PyAV seeks to the keyframe at or
before the frame and decodes forward (cost ≤ one GOP), or decord jumps there (local files only). Files are
opened through pyarrow filesystems, so an output on ``s3://``, ``gs://`` or any fsspec protocol reads like a
local folder (PyAV reads the pyarrow file object). Each file's pts index is probed once and its decoder
kept in a bounded LRU (LeRobot's unbounded decoder cache reached ~30 GB per worker).
"""
from __future__ import annotations

import posixpath
from collections import OrderedDict

import numpy as np
import pyarrow.fs as pafs

from vlaflow.schemas.names import is_safe_rel

from .fs import resolve
from .images import decode_rgb
from .video import UndecodableVideo, VideoIndex, open_decoder, probe

DEFAULT_CACHE = 16  # open video files per reader


class FrameReader:
    """``FrameReader(output_root).read(path, [i, j, ...])`` → RGB arrays in the order asked. Keeps up to
    ``cache`` decoders open (one per video file). ``root`` is a local path or any URI ``media.fs.resolve``
    opens."""

    def __init__(self, root: str, backend: str = "pyav", cache: int = DEFAULT_CACHE):
        self.fs, self.root = resolve(root)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.backend, self.cache = backend, cache
        self._open: OrderedDict[str, tuple] = OrderedDict()  # rel -> (decoder, file object or None)

    def _load(self, rel: str) -> tuple:
        if not is_safe_rel(rel):
            raise ValueError(f"video path {rel[:100]!r} is not a relative path inside the output")
        path = posixpath.join(self.root, rel)
        if self.local:  # a path: PyAV and decord read it without a Python file object in the loop
            return open_decoder(self.backend, path, index=probe(path)), None
        try:
            fh = self.fs.open_input_file(path)
        except OSError as err:
            raise UndecodableVideo(f"{rel}: cannot open ({type(err).__name__}: {err})") from None
        try:
            return open_decoder(self.backend, path, fh=fh, index=probe(fh)), fh
        except BaseException:
            fh.close()
            raise

    def decoder(self, rel: str):
        """The open decoder of ``rel`` (pts index probed once), least recently used ones closed."""
        if rel in self._open:
            self._open.move_to_end(rel)
        else:
            self._open[rel] = self._load(rel)
            if len(self._open) > self.cache:
                _close(self._open.popitem(last=False)[1])
        return self._open[rel][0]

    def index(self, rel: str) -> VideoIndex:
        return self.decoder(rel).index

    def read(self, rel: str, indices) -> list[np.ndarray]:
        wanted = [int(i) for i in indices]
        got = dict(self.decoder(rel).frames(sorted(set(wanted))))
        return [got[i] for i in wanted]

    def close(self) -> None:
        while self._open:
            _close(self._open.popitem()[1])

    def frame(self, images: dict | None, video: dict | None) -> np.ndarray:
        """One camera of one row: ``images.<role>`` ({bytes, path}) or ``videos.<role>`` ({path, frame_index})."""
        if images and images.get("bytes") is not None:
            return decode_rgb(images["bytes"], "images")
        if video and video.get("path"):
            return self.read(video["path"], [video["frame_index"]])[0]
        raise ValueError("this row has no frame for the camera")


def _close(entry: tuple) -> None:
    decoder, fh = entry
    decoder.close()
    if fh is not None:
        fh.close()
