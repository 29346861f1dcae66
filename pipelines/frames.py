"""Loader side of frame storage: a row's camera → RGB array, whether stored as image bytes or video reference.

Video references are decoded by integer frame index (presentation order): PyAV seeks to the keyframe at or
before the frame and decodes forward (cost ≤ one GOP), or decord jumps there. Each file's pts index is
probed once and kept in a bounded LRU (LeRobot's unbounded decoder cache reached ~30 GB per worker).
"""
from __future__ import annotations

import io
from collections import OrderedDict

import numpy as np

from vlaflow.converters.ego.video import VideoIndex, open_decoder, probe

from .layout import is_safe_rel
from .storage import Output

DEFAULT_CACHE = 16  # open video indexes per reader


class FrameReader:
    """``FrameReader(output_root).read(path, [i, j, ...])`` → RGB arrays in the order asked. Keeps up to
    ``cache`` decoders open (one per video file)."""

    def __init__(self, root: str, backend: str = "pyav", cache: int = DEFAULT_CACHE):
        self.out = Output(root)
        self.backend, self.cache = backend, cache
        self._decoders: OrderedDict[str, object] = OrderedDict()

    def _local(self, rel: str) -> str:
        if not is_safe_rel(rel):
            raise ValueError(f"video path {rel[:100]!r} is not a relative path inside the output")
        path = self.out.path(rel)
        if type(self.out.fs).__name__ != "LocalFileSystem":
            raise ValueError("FrameReader decodes videos from a local output folder")
        return path

    def decoder(self, rel: str):
        """The open decoder of ``rel`` (pts index probed once), least recently used ones closed."""
        if rel in self._decoders:
            self._decoders.move_to_end(rel)
        else:
            path = self._local(rel)
            self._decoders[rel] = open_decoder(self.backend, path, index=probe(path))
            if len(self._decoders) > self.cache:
                self._decoders.popitem(last=False)[1].close()
        return self._decoders[rel]

    def index(self, rel: str) -> VideoIndex:
        return self.decoder(rel).index

    def read(self, rel: str, indices) -> list[np.ndarray]:
        wanted = [int(i) for i in indices]
        got = dict(self.decoder(rel).frames(sorted(set(wanted))))
        return [got[i] for i in wanted]

    def close(self) -> None:
        while self._decoders:
            self._decoders.popitem()[1].close()

    def frame(self, images: dict | None, video: dict | None) -> np.ndarray:
        """One camera of one row: ``images.<role>`` ({bytes, path}) or ``videos.<role>`` ({path, frame_index})."""
        if images and images.get("bytes") is not None:
            from PIL import Image

            return np.asarray(Image.open(io.BytesIO(images["bytes"])).convert("RGB"))
        if video and video.get("path"):
            return self.read(video["path"], [video["frame_index"]])[0]
        raise ValueError("this row has no frame for the camera")
