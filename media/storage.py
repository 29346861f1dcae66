"""How an ingest stores camera frames: one option (``--opt storage=``) applied by the writer to every
converter's episodes, so any source can be stored as MP4 without its converter knowing.

- ``jpeg`` / ``png``: frames stay ``images.<role>`` bytes. Encoded source bytes are never re-encoded (a
  PNG source stays PNG under ``storage=jpeg``: re-encoding could only lose); converters that encode raw
  frames themselves (egocentric video) use the named format.
- ``mp4``: each camera of an episode becomes one MP4 clip (``ClipEncoder``: ``video_codec``, ``gop``,
  ``crf``), one frame per step, which the shard writer appends to the shard's video file
  (``shard_videos``). Depth roles and 16-bit frames stay images: video is 8-bit and lossy, and depth
  values must survive exactly. A camera with a missing step or a size change inside the episode also
  stays images (a video reference has no null frames, a clip one size).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from vlaflow.schemas import Episode, InputError, VideoClip
from vlaflow.schemas.conventions import NS_PER_S

from .images import EIGHT_BIT_MODES, decode_rgb, encode_image, image_header
from .video import CODECS, ClipEncoder

STORAGES = ("jpeg", "png", "mp4")
STORAGE_OPTION_KEYS = frozenset({"storage", "video_codec", "gop", "crf", "jpeg_quality"})
DEPTH_PREFIX = "depth"  # camera roles whose values are measurements, never lossy-encoded


@dataclass(frozen=True)
class FrameStorage:
    """The parsed storage options. ``kind`` None: frames as the converter made them."""

    kind: str | None = None
    codec: str = "h264"
    gop: int = 10  # keyframe interval of the MP4s, in steps: smaller = faster random access, larger files
    crf: int | None = None  # None: the codec's default (h264 23, av1 32)
    jpeg_quality: int = 90

    @classmethod
    def from_options(cls, extra: dict) -> "FrameStorage":
        """From ``--opt`` values (strings); a bad value is a one-line ``InputError``."""
        kind = str(extra["storage"]).lower() if extra.get("storage") not in (None, "") else None
        try:
            s = cls(kind=kind, codec=str(extra.get("video_codec", "h264")).lower(), gop=int(extra.get("gop", 10)),
                    crf=int(extra["crf"]) if extra.get("crf") not in (None, "") else None,
                    jpeg_quality=int(extra.get("jpeg_quality", 90)))
        except ValueError as err:
            raise InputError(f"bad --opt value: {err}") from None
        if s.kind not in (None, *STORAGES) or s.codec not in CODECS:
            raise InputError(f"--opt storage must be one of {STORAGES}, video_codec one of {sorted(CODECS)}")
        if s.gop < 1 or not 1 <= s.jpeg_quality <= 100 or (s.crf is not None and not 0 <= s.crf <= 63):
            raise InputError("--opt gop must be >= 1, jpeg_quality in 1..100, crf in 0..63")
        return s

    @property
    def as_video(self) -> bool:
        return self.kind == "mp4"

    def encode_image(self, rgb: np.ndarray) -> bytes:
        """A decoded frame as image bytes: PNG under ``storage=png``, else JPEG at ``jpeg_quality``."""
        return encode_image(rgb, "png" if self.kind == "png" else "jpeg", self.jpeg_quality)

    def clip(self, frames: Iterable[np.ndarray], rate: Fraction) -> VideoClip:
        """RGB frames, one per step, → an MP4 clip at ``rate`` with ``frame_index`` 0..n-1."""
        enc = ClipEncoder(rate, self.codec, self.gop, self.crf)
        for rgb in frames:
            enc.add(rgb)
        return VideoClip(frame_index=np.arange(enc.count, dtype=np.int32), data=enc.finish())

    def apply(self, ep: Episode) -> Episode:
        """Under ``storage=mp4``, every 8-bit camera of ``ep`` as a clip instead of image bytes; else ``ep``.

        Every frame is decoded, so one that does not decode sinks the episode (``UndecodableImage``)."""
        if not self.as_video:
            return ep
        images, videos = dict(ep.images), dict(ep.videos)
        for role, frames in ep.images.items():
            if frames is None or role in videos or not self._video_safe(role, frames, ep.episode_id):
                continue
            where = f"{ep.episode_id}: images.{role}"
            videos[role] = self.clip((decode_rgb(b, f"{where} step {i}") for i, b in enumerate(frames)),
                                     step_rate(ep.timestamp_ns))
            del images[role]
        return replace(ep, images=images, videos=videos) if len(videos) != len(ep.videos) else ep

    @staticmethod
    def _video_safe(role: str, frames: list, eid: str) -> bool:
        if role.startswith(DEPTH_PREFIX) or not frames or any(b is None for b in frames):
            return False
        headers = {image_header(b, f"{eid}: images.{role} step {i}") for i, b in enumerate(frames)}
        return len({size for _, size in headers}) == 1 and all(mode in EIGHT_BIT_MODES for mode, _ in headers)


def step_rate(timestamp_ns) -> Fraction:
    """The clip rate of an episode: its mean step rate as a rational with denominator ≤ 1001 (5, 15/2,
    30000/1001 come out exact from the integer timestamps). Clip timing is nominal: the rows' timestamps stay
    the truth, and a frame is found by index."""
    ts = np.asarray(timestamp_ns, np.int64)
    span = int(ts[-1] - ts[0]) if len(ts) > 1 else 0
    if span <= 0:
        return Fraction(1)
    return (Fraction((len(ts) - 1) * NS_PER_S, span).limit_denominator(1001)) or Fraction(1, 1001)
