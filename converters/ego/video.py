"""The ``--opt`` keys every video converter shares, and turning decoded samples into stored frames.

Probing, sampling, decoders and clip encoding are ``vlaflow.media``'s; the storage keys (``storage``,
``video_codec``, ``gop``, ``crf``, ``jpeg_quality``) are the pipeline's, parsed once into
``Converter.frame_storage``. Video converters encode their decoded samples themselves (as clips under
``storage=mp4``), so a frame is encoded once.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from vlaflow.media import FrameStorage
from vlaflow.schemas import TRAJ_HORIZON

from ..base import option

MAX_RATE_HZ = 240  # above any camera we read; a grid finer than the frames only repeats them


@dataclass(frozen=True)
class VideoOptions:
    rate_hz: Fraction = option(Fraction(10), "rows per second, sampled on the video's pts (VFR-safe)")
    decoder: Literal["pyav", "decord"] = option("pyav", "pyav streams from keyframes (any file); decord seeks (local)")
    horizon: int = option(TRAJ_HORIZON, "trajectory targets: future samples per row")

    def __post_init__(self):
        if not 0 < self.rate_hz <= MAX_RATE_HZ:
            raise ValueError(f"--opt rate_hz must be in (0, {MAX_RATE_HZ}], got {self.rate_hz}")
        if not 1 <= self.horizon <= TRAJ_HORIZON:
            raise ValueError(f"--opt horizon must be in 1..{TRAJ_HORIZON}, got {self.horizon}")


@dataclass(frozen=True)
class HandOptions(VideoOptions):
    hands: Literal["none", "mediapipe"] = option("none", "2D hand traces tracked on the frames (extra vlaflow[hands])")
    mirrored: bool = option(False, "a selfie (mirrored) camera: keep MediaPipe's handedness labels")


def store_frames(decoder, indices, storage: FrameStorage, rate: Fraction):
    """Decode ``indices`` (sorted) once → (image bytes per step, None) or (None, VideoClip at ``rate``)."""
    frames = (rgb for _, rgb in decoder.frames(indices))
    if storage.as_video:
        return None, storage.clip(frames, rate)
    return [storage.encode_image(rgb) for rgb in frames], None
