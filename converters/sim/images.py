"""The sim-specific frame quirks: OpenCV's colour trap and NUL-padded byte strings.

Generic encoding, decoding and orientation live in ``vlaflow.media.images``.
"""
from __future__ import annotations

import numpy as np

from vlaflow.media.images import decode_rgb, encode_image


def decode_cv2_semantics(data: bytes, where: str) -> np.ndarray:
    """What ``cv2.imdecode`` returns, as an array: the JPEG's channels in reversed order.

    RoboTwin 2.0 wrote ``cv2.imencode('.jpg', rgb)``: OpenCV takes the array as BGR, so the JPEG's
    red channel holds the source's blue. Reversing the decoded channels recovers the RGB array.
    """
    return decode_rgb(data, where)[..., ::-1]


def fix_opencv_jpegs(frames: list[bytes], where: str, quality: int = 95) -> list[bytes]:
    """JPEGs written by OpenCV from RGB arrays → JPEGs whose colours are right (``bgr_to_rgb``).

    Every frame is decoded (so a frame that does not decode sinks the episode with
    ``undecodable_image``), channel-swapped and re-encoded at ``quality`` (OpenCV's default 95).
    """
    return [encode_image(decode_cv2_semantics(data, f"{where} frame {i}"), "jpeg", quality)
            for i, data in enumerate(frames)]


def strip_padding(values) -> list[bytes]:
    """Fixed-width ``S{n}`` datasets pad with NULs; JPEG ends at its EOI, so trailing NULs go."""
    out = []
    for v in values:
        b = bytes(v) if not isinstance(v, bytes) else v
        out.append(b.rstrip(b"\0"))
    return out
