"""A tiny random-weight SigLIP vision tower written offline (no download): what the README's first command and the
tests encode sample frames with, through the same ``from_pretrained`` path a real encoder takes."""
from __future__ import annotations

from pathlib import Path


def save_tiny_siglip(path: str | Path, seed: int = 0) -> Path:
    """A 32x32-pixel, 2-layer, 32-wide SigLIP vision model + its image processor, saved with ``save_pretrained``."""
    import torch
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    path = Path(path)
    torch.manual_seed(seed)
    SiglipVisionModel(SiglipVisionConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=37)).save_pretrained(path)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path
