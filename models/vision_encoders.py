"""A frozen vision encoder behind one small interface: RGB arrays in, a pooled embedding (and optionally k
pooled patch tokens) out, preprocessed by the model's own image processor.

Loaded through transformers' real ``from_pretrained`` path from a local folder or a Hub id resolved from the
local cache only (never the network at runtime), so a features folder can record exactly what produced it:
the id, the Hub commit, the sha256 of every weight file, the processor config, dtype and pooling.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vlaflow.schemas import InputError

DEFAULT_ENCODER = "google/siglip-base-patch16-224"
STORAGE_DTYPES = ("float16", "bfloat16")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
# model_type -> the transformers class that loads only the vision tower (a full SigLIP/CLIP checkpoint too)
_VISION_TOWERS = {
    "siglip": "SiglipVisionModel", "siglip_vision_model": "SiglipVisionModel",
    "siglip2": "Siglip2VisionModel", "siglip2_vision_model": "Siglip2VisionModel",
    "clip": "CLIPVisionModel", "clip_vision_model": "CLIPVisionModel",
}
# Vision towers of VLMs: not supported yet, refused by name rather than loaded half-way.
_NOT_YET = {"qwen2_5_vl": "Qwen2.5-VL", "qwen2_vl": "Qwen2-VL", "qwen3_vl": "Qwen3-VL (its deepstack features)",
            "qwen2_5_vl_text": "Qwen2.5-VL", "qwen3_vl_moe": "Qwen3-VL-MoE"}


@dataclass
class EncoderInfo:
    """What produced a feature: enough to refuse mixing and to reproduce it."""

    id: str  # as given (hub id or path)
    model_type: str
    model_class: str
    revision: str  # Hub commit hash when the cache gives one, else "local"
    weights_sha256: dict  # file name -> sha256
    processor: dict  # the image processor's config
    dim: int
    pooling: str  # "pooler_output" or "mean_patch_tokens"
    tokens: int  # k pooled patch tokens per frame (0: none)
    token_pooling: str  # how patch tokens are pooled to k ("adaptive_avg_2d" / "adaptive_avg_1d" / "")
    dtype: str  # storage dtype of the features
    compute_dtype: str
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> dict:
        """The fields that make two runs' features interchangeable (the id and path may differ for one model)."""
        d = self.to_json()
        d.pop("id")
        d.pop("extra")
        return d


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def resolve_encoder_dir(id_or_path: str, revision: str | None = None) -> tuple[Path, str]:
    """A local folder as it is, or a Hub id from the local Hugging Face cache (no network): (folder, revision)."""
    p = Path(id_or_path).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise InputError(f"encoder {id_or_path}: the folder has no config.json (save it with save_pretrained)")
        return p, "local"
    if p.exists() or id_or_path.startswith((".", "/")) or id_or_path.count("/") != 1:
        raise InputError(f"encoder {id_or_path}: no such folder, and not a Hub id (org/name)")
    from huggingface_hub import snapshot_download

    try:
        snap = Path(snapshot_download(id_or_path, revision=revision, local_files_only=True))
    except Exception as err:  # LocalEntryNotFoundError and friends: one line, never a traceback
        cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        raise InputError(f"encoder {id_or_path}: not in the local Hugging Face cache ({cache}) and downloads are "
                         f"off; fetch it first (`hf download {id_or_path}`) or pass a local folder "
                         f"[{type(err).__name__}]") from None
    if not (snap / "config.json").is_file():
        raise InputError(f"encoder {id_or_path}: the cached snapshot {snap} has no config.json")
    rev = snap.name if re.fullmatch(r"[0-9a-f]{40}", snap.name) else (revision or "unknown")
    return snap, rev


class VisionEncoder(nn.Module):
    """``encode(list of HxWx3 uint8) -> (pooled [B, D] float32, tokens [B, k, D] float32 or None)``."""

    def __init__(self, model: nn.Module, processor, info: EncoderInfo, device: str = "cpu"):
        super().__init__()
        self.model, self.processor, self.info, self.device = model.eval(), processor, info, device

    def preprocess(self, images: list[np.ndarray]) -> dict:
        batch = self.processor(images=list(images), return_tensors="pt")
        dtype = getattr(torch, self.info.compute_dtype)
        return {k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device)) for k, v in batch.items()}

    @torch.inference_mode()
    def forward(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.model(**inputs)
        hidden = out.last_hidden_state
        patches = _patch_tokens(hidden, inputs, self.model.config)
        pooled = out.pooler_output if self.info.pooling == "pooler_output" else patches.mean(1)
        if pooled.dim() == 3:  # some poolers keep a token axis of 1
            pooled = pooled[:, 0]
        toks = pool_tokens(patches, self.info.tokens) if self.info.tokens else None
        return pooled.float(), (toks.float() if toks is not None else None)

    def encode(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        pooled, toks = self(self.preprocess(images))
        return pooled.cpu().numpy(), (toks.cpu().numpy() if toks is not None else None)


def _patch_tokens(hidden: torch.Tensor, inputs: dict, config) -> torch.Tensor:
    """The patch tokens of ``last_hidden_state``: leading CLS/register tokens dropped (ViT, DINOv2, CLIP)."""
    pv = inputs.get("pixel_values")
    patch = getattr(config, "patch_size", None)
    if pv is None or pv.dim() != 4 or not patch:
        return hidden
    n = (pv.shape[-2] // patch) * (pv.shape[-1] // patch)
    return hidden[:, hidden.shape[1] - n:] if hidden.shape[1] >= n else hidden


def pool_tokens(patches: torch.Tensor, k: int) -> torch.Tensor:
    """[B, N, D] -> [B, k, D]: a square grid pooled 2D to sqrt(k)² when k is a square, else 1D in raster order."""
    b, n, d = patches.shape
    side, ks = math.isqrt(n), math.isqrt(k)
    if side * side == n and ks * ks == k:
        grid = patches.transpose(1, 2).reshape(b, d, side, side)
        return nn.functional.adaptive_avg_pool2d(grid, ks).reshape(b, d, k).transpose(1, 2)
    return nn.functional.adaptive_avg_pool1d(patches.transpose(1, 2), k).transpose(1, 2)


def load_vision_encoder(id_or_path: str = DEFAULT_ENCODER, tokens: int = 0, dtype: str = "float16",
                        device: str = "cpu", revision: str | None = None) -> VisionEncoder:
    """Load a frozen vision tower and its own image processor, offline (local folder or local Hub cache)."""
    import transformers
    from transformers import AutoConfig, AutoImageProcessor

    transformers.utils.logging.disable_progress_bar()

    if dtype not in STORAGE_DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
    if tokens < 0:
        raise InputError(f"--tokens must be >= 0, got {tokens}")
    if device != "cpu" and not torch.cuda.is_available():
        raise InputError(f"encoder {id_or_path}: device {device!r} asked (--num-gpus) but torch sees no CUDA device")
    folder, rev = resolve_encoder_dir(id_or_path, revision)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"encoder {id_or_path}: cannot read its config ({str(err).splitlines()[0][:160]})") from None
    mtype = config.model_type
    if mtype in _NOT_YET:
        raise InputError(f"encoder {id_or_path}: the {_NOT_YET[mtype]} vision tower is not supported yet; "
                         "use a SigLIP/SigLIP2, CLIP, DINOv2 or ViT vision model")
    cls_name = _VISION_TOWERS.get(mtype, "AutoModel")
    if cls_name.startswith("Siglip2") and tokens:
        raise InputError(f"encoder {id_or_path}: --tokens with SigLIP2 (variable-resolution patches) is not "
                         "supported yet; use the pooled embedding")
    try:
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"encoder {id_or_path}: no image processor it can load (preprocessor_config.json): "
                         f"{str(err).splitlines()[0][:160]}") from None
    weights = sorted(p for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES) and p.is_file())
    if not weights:
        raise InputError(f"encoder {id_or_path}: no weight files (*.safetensors) in {folder}")
    compute = "float32" if device == "cpu" else dtype
    try:
        model = getattr(transformers, cls_name).from_pretrained(folder, local_files_only=True,
                                                                dtype=getattr(torch, compute))
    except (OSError, ValueError) as err:
        raise InputError(f"encoder {id_or_path}: cannot load its weights ({str(err).splitlines()[0][:160]})") from None
    model.requires_grad_(False)
    model.to(device)
    has_pooler = _has_pooler(model)
    info = EncoderInfo(
        id=id_or_path, model_type=mtype, model_class=type(model).__name__, revision=rev,
        weights_sha256={p.name: _sha256(p) for p in weights},
        processor=json.loads(processor.to_json_string()),
        dim=int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "vision_config").hidden_size),
        pooling="pooler_output" if has_pooler else "mean_patch_tokens",
        tokens=tokens, token_pooling="" if not tokens else ("adaptive_avg_2d" if math.isqrt(tokens) ** 2 == tokens
                                                            else "adaptive_avg_1d"),
        dtype=dtype, compute_dtype=compute, extra={"folder": str(folder), "transformers": transformers.__version__})
    info.processor.pop("_processor_class", None)
    return VisionEncoder(model, processor, info, device)


def _has_pooler(model: nn.Module) -> bool:
    """Whether the forward returns a pooler output (probe once on a dummy input of the config's size)."""
    cfg = model.config
    size = getattr(cfg, "image_size", 224)
    size = size if isinstance(size, int) else size[0]
    chans = getattr(cfg, "num_channels", 3)
    try:
        p = next(model.parameters())
        with torch.inference_mode():
            out = model(pixel_values=torch.zeros(1, chans, size, size, dtype=p.dtype, device=p.device))
        return getattr(out, "pooler_output", None) is not None
    except Exception:  # e.g. SigLIP2 needs its mask inputs: it has a MAP head
        return hasattr(model, "vision_model") and getattr(model.vision_model, "head", None) is not None
