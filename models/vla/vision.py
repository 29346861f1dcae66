"""``vision="encoder"``: raw frames through a frozen encoder inside the model (no precomputed features).

Each camera's frame (JPEG/PNG bytes or an HxWx3 uint8 array) is decoded and put through the encoder's own
image processor's resize/crop (``preprocess_frames``: uint8 pixels), in the training feed's read tasks or in the
collate for frames that arrive raw (``decode_frames``, e.g. at predict time); the model rescales and normalizes
them on its device (``PixelNormalizer``, bit-identical to the processor), runs the frozen encoder
(``FrozenEncoder.features``) and gets the same [B, cameras, tokens, D] features the features stage
would have stored — pooled when ``vision_tokens == 1``, else ``vision_tokens`` pooled patch tokens.
The encoder's weights are not part of the VLA checkpoint: ``vision_encoder`` names them (a local
folder or a cached Hub id), as it does for the features stage.
"""
from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from .config import VLAConfig


@lru_cache(maxsize=4)
def _image_processor(encoder: str):
    from transformers import AutoImageProcessor

    from vlaflow.models.vision_encoders import resolve_encoder_dir

    folder, _ = resolve_encoder_dir(encoder)
    return AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)


def to_rgb(frame) -> np.ndarray:
    """Bytes (any PIL format) or an HxWx3 uint8 array → HxWx3 uint8."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        from PIL import Image

        with Image.open(io.BytesIO(bytes(frame))) as im:
            return np.asarray(im.convert("RGB"))
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"a frame must be image bytes or an HxWx3 uint8 array, got {arr.dtype} {arr.shape}")
    return arr


def preprocess_frames(encoder: str, frames: list[list]) -> tuple[np.ndarray, np.ndarray]:
    """Frames per sample per camera (bytes, HxWx3 uint8 or None) → (pixel_values [B, C, 3, S, S], mask [B, C]); a
    missing frame is a black image, masked. The encoder's own image processor resizes and crops; its rescale and
    normalize are left to the model (``PixelNormalizer``, on the model's device), so pixels stay uint8 — 4x fewer bytes
    to move and ~3x less CPU here. A processor whose output is not uint8 that way gives its full float32 output. The
    training feed's read tasks call this (in parallel, off the trainer), the collate only for frames that arrive raw."""
    proc = _image_processor(encoder)
    n_cam = len(frames[0]) if frames else 0
    flat, mask = [], np.zeros((len(frames), n_cam), bool)
    blank = np.zeros((32, 32, 3), np.uint8)
    for i, row in enumerate(frames):
        for c, img in enumerate(row):
            flat.append(blank if img is None else to_rgb(img))
            mask[i, c] = img is not None
    pv = np.asarray(proc(images=flat, return_tensors="np", do_rescale=False, do_normalize=False)["pixel_values"])
    if pv.dtype != np.uint8:
        pv = np.asarray(proc(images=flat, return_tensors="np")["pixel_values"], np.float32)
    if pv.ndim != 4:
        raise ValueError(f"vision_encoder {encoder!r}: its image processor gives pixel_values of shape {pv.shape}, "
                         "not one fixed-size image per frame; use vision: features for this encoder")
    return pv.reshape(len(frames), n_cam, *pv.shape[1:]), mask


def decode_frames(config: VLAConfig, samples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel_values [B, C, 3, S, S], vision_mask [B, C]): stacked when the feed preprocessed them already
    (``pixel_values`` per sample), else decoded here from ``images``."""
    n_cam = len(config.cameras)
    if samples and all(s.get("pixel_values") is not None for s in samples):
        pv = np.stack([np.asarray(s["pixel_values"]) for s in samples])
        if pv.shape[1] != n_cam:
            raise ValueError(f"pixel_values hold {pv.shape[1]} cameras, the model has {n_cam} ({', '.join(config.cameras)})")
        mask = np.stack([np.asarray(s["vision_mask"], bool) for s in samples])
        return torch.from_numpy(pv), torch.from_numpy(mask)
    frames = []
    for s in samples:
        images = list(s.get("images") or [])[:n_cam]
        frames.append(images + [None] * (n_cam - len(images)))
    pv, mask = preprocess_frames(config.vision_encoder, frames)
    return torch.from_numpy(pv), torch.from_numpy(mask)


class PixelNormalizer(nn.Module):
    """The image processor's rescale and normalize, for uint8 pixel_values, on the model's device: the same
    operations in the same precision as transformers' (float64 rescale, then float32 (x - mean) / std), so the
    result is bit-identical to the processor's own output."""

    def __init__(self, encoder: str):
        super().__init__()
        proc = _image_processor(encoder)
        self.scale = float(proc.rescale_factor) if getattr(proc, "do_rescale", False) else None
        norm = getattr(proc, "do_normalize", False)
        self.register_buffer("mean", torch.tensor(proc.image_mean if norm else [0.0] * 3, dtype=torch.float32)
                             .view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(proc.image_std if norm else [1.0] * 3, dtype=torch.float32)
                             .view(3, 1, 1), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dtype != torch.uint8:
            return pixels  # already the processor's float output
        x = (pixels.double() * self.scale).float() if self.scale is not None else pixels.float()
        return (x - self.mean) / self.std


class FrozenEncoder(nn.Module):
    def __init__(self, encoder, normalizer: PixelNormalizer | None = None):
        super().__init__()
        self.encoder = encoder
        self.encoder.requires_grad_(False)
        self.normalizer = normalizer

    def train(self, mode: bool = True):
        super().train(False)
        return self

    @torch.no_grad()
    def features(self, pixel_values: torch.Tensor, vision_mask: torch.Tensor) -> torch.Tensor:
        b, c = pixel_values.shape[:2]
        if self.normalizer is not None:
            pixel_values = self.normalizer(pixel_values)
        elif pixel_values.dtype == torch.uint8:
            raise ValueError("uint8 pixel_values need the encoder's PixelNormalizer")
        dtype = next(self.encoder.parameters()).dtype
        pooled, toks = self.encoder({"pixel_values": pixel_values.flatten(0, 1).to(dtype)})
        feats = (toks if toks is not None else pooled[:, None]).float().clone()  # out of inference mode
        feats = feats.reshape(b, c, feats.shape[1], feats.shape[2])
        return torch.where(vision_mask.bool()[:, :, None, None], feats, torch.zeros((), device=feats.device))


def load_frozen_encoder(config: VLAConfig) -> FrozenEncoder:
    from vlaflow.models.vision_encoders import load_vision_encoder

    enc = load_vision_encoder(config.vision_encoder, tokens=config.vision_tokens if config.vision_tokens > 1 else 0,
                              dtype="float16")
    if enc.info.dim != config.vision_dim:
        raise ValueError(f"vision_encoder {config.vision_encoder!r} gives features of width {enc.info.dim}, "
                         f"the config says vision_dim={config.vision_dim}")
    return FrozenEncoder(enc, PixelNormalizer(config.vision_encoder))
