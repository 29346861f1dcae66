"""Encoded frames: raw arrays to JPEG/PNG, bytes back to RGB, orientation fixes.

The schema stores encoded frames; simulators and decoded video hand over raw ``uint8`` arrays, which are
encoded here (PNG: lossless; JPEG: smaller). Orientation changes use the schema's ``image_transform``
vocabulary. Depth and other 16-bit frames are PNG-only: JPEG and video are 8-bit and lossy.
"""
from __future__ import annotations

import io

import numpy as np

from vlaflow.schemas import UndecodableImage
from vlaflow.schemas.validate import decode_image

FORMATS = ("png", "jpeg")
EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})


def orient(frames: np.ndarray, transform: str) -> np.ndarray:
    """Apply ``flip_vertical`` / ``flip_horizontal`` / ``rotate_180`` to ``[..., H, W, C]`` frames."""
    for t in transform.split("+"):
        if t == "flip_vertical":
            frames = frames[..., ::-1, :, :]
        elif t == "flip_horizontal":
            frames = frames[..., :, ::-1, :]
        elif t == "rotate_180":
            frames = frames[..., ::-1, ::-1, :]
        elif t in ("none", "", "bgr_to_rgb"):
            continue
        else:
            raise ValueError(f"unknown image transform {t!r}")
    return frames


def encode_image(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """One ``uint8 [H, W, 3]`` (or ``[H, W]``) frame → JPEG at ``quality`` or PNG (fast, level 1)."""
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(rgb))
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=1)
    elif fmt == "jpeg":
        img.convert("RGB").save(buf, format="JPEG", quality=quality)
    else:
        raise ValueError(f"image format must be one of {FORMATS}, got {fmt!r}")
    return buf.getvalue()


def encode_depth_mm(depth: np.ndarray, mm_per_unit: float) -> bytes:
    """A float depth map (``[H, W]`` or ``[H, W, 1]``) → a lossless 16-bit PNG in whole millimetres.

    0 means no measurement (NaN, inf, zero or negative depth); depth beyond 65.535 m saturates at 65535.
    Millimetres keep a metre-scale float's precision that matters for manipulation at half the bytes."""
    from PIL import Image

    d = np.asarray(depth, dtype=np.float64)
    if d.ndim == 3 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise UndecodableImage(f"depth map has shape {d.shape}, expected [H, W] or [H, W, 1]")
    mm = d * mm_per_unit
    valid = np.isfinite(mm) & (mm > 0)
    out = np.where(valid, np.clip(np.rint(np.where(valid, mm, 0)), 1, 65535), 0).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_frames(frames: np.ndarray, fmt: str = "png", where: str = "", quality: int = 95) -> list[bytes]:
    """``uint8 [T, H, W, 3]`` (or ``[T, H, W]``/``[T, H, W, 1]``) → encoded bytes per frame."""
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise UndecodableImage(f"{where}: camera array has dtype {arr.dtype}, expected uint8")
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (3, 4)):
        raise UndecodableImage(f"{where}: camera array has shape {arr.shape}, expected [T, H, W, 3]")
    return [encode_image(frame, fmt, quality) for frame in arr]


def decode_rgb(data: bytes, where: str) -> np.ndarray:
    """Decode an encoded frame to ``uint8 [H, W, 3]`` in the order its bytes declare (PIL semantics)."""
    if not data:
        raise UndecodableImage(f"{where}: empty image")
    return np.asarray(decode_image(data, where).convert("RGB"))


def check_encoded(frames: list[bytes], where: str) -> None:
    """Full decode of encoded frames (catches a JPEG that does not decode before it is written)."""
    for i, data in enumerate(frames):
        decode_rgb(data, f"{where} frame {i}")


def image_header(data: bytes, where: str) -> tuple[str, tuple[int, int]]:
    """(PIL mode, (width, height)) from the header alone: whether a frame is 8-bit, without decoding it."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        return img.mode, img.size
    except Exception as err:  # PIL raises many types for bad data
        raise UndecodableImage(f"{where}: {type(err).__name__}: {err}") from None
