"""The ``--opt`` keys every video converter shares, and turning decoded samples into stored frames.

Probing, sampling, decoders and clip encoding are ``vlaflow.media``'s; the storage keys (``storage``,
``video_codec``, ``gop``, ``crf``, ``jpeg_quality``) are parsed by ``media.FrameStorage``. Video converters
encode their decoded samples themselves (as clips under ``storage=mp4``), so a frame is encoded once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from vlaflow.media import DECODERS, STORAGE_OPTION_KEYS, FrameStorage
from vlaflow.schemas import TRAJ_HORIZON

MAX_RATE_HZ = 240  # above any camera we read; a grid finer than the frames only repeats them


@dataclass(frozen=True)
class VideoOptions:
    """The ``--opt`` keys every video converter shares (parsed once, validated with clear errors)."""

    rate_hz: Fraction = Fraction(10)
    decoder: str = "pyav"  # pyav | decord
    storage: FrameStorage = field(default_factory=FrameStorage)  # jpeg (default) | png: images; mp4: clips
    horizon: int = TRAJ_HORIZON  # trajectory targets: future samples per row
    min_confidence: float = 0.5  # joints / points below it are masked
    hands: str = ""  # "mediapipe": 2D hand traces from the frames (optional extra)

    KEYS = STORAGE_OPTION_KEYS | {"rate_hz", "decoder", "horizon", "min_confidence", "hands", "mirrored"}

    @classmethod
    def from_extra(cls, extra: dict) -> "VideoOptions":
        hands = str(extra.get("hands", "")).lower()
        try:
            o = cls(rate_hz=Fraction(str(extra.get("rate_hz", "10"))), decoder=str(extra.get("decoder", "pyav")),
                    storage=FrameStorage.from_options(extra), horizon=int(extra.get("horizon", TRAJ_HORIZON)),
                    min_confidence=float(extra.get("min_confidence", 0.5)),
                    hands="" if hands in ("", "none") else hands)
        except (ValueError, ZeroDivisionError) as err:
            raise ValueError(f"bad --opt value: {err}") from None
        if not 0 < o.rate_hz <= MAX_RATE_HZ:
            raise ValueError(f"--opt rate_hz must be in (0, {MAX_RATE_HZ}]")
        if o.decoder not in DECODERS:
            raise ValueError(f"--opt decoder must be one of {DECODERS}")
        if not 1 <= o.horizon <= TRAJ_HORIZON or o.hands not in ("", "mediapipe"):
            raise ValueError(f"--opt horizon must be in 1..{TRAJ_HORIZON}, hands mediapipe or none")
        return o


def store_frames(decoder, indices, opts: VideoOptions):
    """Decode ``indices`` (sorted) once → (image bytes per step, None) or (None, VideoClip)."""
    frames = (rgb for _, rgb in decoder.frames(indices))
    if opts.storage.as_video:
        return None, opts.storage.clip(frames, opts.rate_hz)
    return [opts.storage.encode_image(rgb) for rgb in frames], None
