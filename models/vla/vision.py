"""``vision="encoder"``: raw frames through a frozen encoder inside the model (no precomputed features).

The processor decodes each camera's frame (JPEG/PNG bytes or an HxWx3 uint8 array) and applies the
encoder's own image processor (``decode_frames``); the model runs the frozen encoder
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


def decode_frames(config: VLAConfig, samples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel_values [B, C, 3, S, S], vision_mask [B, C]); a missing frame is a black image, masked."""
    proc = _image_processor(config.vision_encoder)
    n_cam = len(config.cameras)
    frames, mask = [], np.zeros((len(samples), n_cam), bool)
    blank = None
    for i, s in enumerate(samples):
        images = s.get("images") or [None] * n_cam
        for c in range(n_cam):
            img = images[c] if c < len(images) else None
            if img is None:
                if blank is None:
                    blank = np.zeros((32, 32, 3), np.uint8)
                frames.append(blank)
            else:
                frames.append(to_rgb(img))
                mask[i, c] = True
    pv = proc(images=frames, return_tensors="pt")["pixel_values"]
    return pv.reshape(len(samples), n_cam, *pv.shape[1:]), torch.from_numpy(mask)


class FrozenEncoder(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.encoder.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(False)
        return self

    @torch.no_grad()
    def features(self, pixel_values: torch.Tensor, vision_mask: torch.Tensor) -> torch.Tensor:
        b, c = pixel_values.shape[:2]
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
    return FrozenEncoder(enc)
