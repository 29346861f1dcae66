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
# VLM checkpoints whose vision tower alone is loaded and run: model_type -> (module, class, vision_config attribute
# holding the merged tokens' width, name). The LLM is never built and its weights are never read.
_QWEN_VISUAL = {
    "qwen2_5_vl": ("qwen2_5_vl", "Qwen2_5_VisionTransformerPretrainedModel", "out_hidden_size", "Qwen2.5-VL"),
    "qwen2_vl": ("qwen2_vl", "Qwen2VisionTransformerPretrainedModel", "hidden_size", "Qwen2-VL"),
}
QWEN_VISUAL_PREFIXES = ("model.visual.", "visual.")  # transformers >= 4.52 checkpoints, then the Hub's originals
_DEEPSTACK = ("its vision tower also returns deepstack features (merged tokens of intermediate layers that the "
              "LLM's first layers add in); vlaflow does not store them yet and will not drop them silently: use "
              "Qwen2.5-VL, SigLIP/SigLIP2, CLIP, DINOv2 or ViT")
# Refused by name rather than loaded half-way.
_REFUSED = {
    "qwen3_vl": f"Qwen3-VL: {_DEEPSTACK}", "qwen3_vl_moe": f"Qwen3-VL-MoE: {_DEEPSTACK}",
    "qwen2_5_vl_text": "this is Qwen2.5-VL's language model config; pass the full checkpoint folder",
    "qwen2_vl_text": "this is Qwen2-VL's language model config; pass the full checkpoint folder",
}


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


_SHA_CACHE: dict[tuple, str] = {}


def _sha256(path: Path) -> str:
    """sha256 of a file, once per process for an unchanged file (the driver and a local worker share it)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


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


class QwenVisualEncoder(VisionEncoder):
    """The vision tower of Qwen2-VL / Qwen2.5-VL alone. Its processor turns each frame into flattened patches
    (``pixel_values`` [sum of t·h·w, C·t_p·p·p]) and ``image_grid_thw``; the tower returns, per image,
    t·h·w / merge² merged tokens (what the LLM would receive; ``get_image_features``), in raster order of the
    (h/merge) x (w/merge) grid. Pooled = their mean; ``tokens`` = that grid pooled to k (2D when k is a square)."""

    def preprocess(self, images: list[np.ndarray]) -> dict:
        batch = self.processor(images=list(images), return_tensors="pt")
        dtype = getattr(torch, self.info.compute_dtype)
        return {"pixel_values": batch["pixel_values"].to(self.device, dtype),
                "grid_thw": batch["image_grid_thw"].to(self.device)}

    @torch.inference_mode()
    def forward(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        grid = inputs["grid_thw"]
        merged = self.model(inputs["pixel_values"], grid_thw=grid).pooler_output  # [sum of tokens, D]
        m = self.model.spatial_merge_size
        pooled, toks = [], []
        for t, (_, gh, gw) in zip(torch.split(merged, (grid.prod(-1) // m ** 2).tolist()), grid.tolist()):
            pooled.append(t.mean(0))
            if self.info.tokens:
                toks.append(pool_grid(t.reshape(-1, gw // m, t.shape[-1]), self.info.tokens))
        return torch.stack(pooled).float(), (torch.stack(toks).float() if toks else None)


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


def pool_grid(grid: torch.Tensor, k: int) -> torch.Tensor:
    """[H, W, D] tokens of one image -> [k, D]: 2D adaptive average to sqrt(k)² when k is a square, else 1D over the
    raster order (the same rule as ``pool_tokens``, for grids that need not be square)."""
    h, w, d = grid.shape
    ks = math.isqrt(k)
    if ks * ks == k:
        return nn.functional.adaptive_avg_pool2d(grid.permute(2, 0, 1)[None], ks).reshape(d, k).T
    return nn.functional.adaptive_avg_pool1d(grid.reshape(1, h * w, d).transpose(1, 2), k)[0].T


@dataclass
class _Resolved:
    """Everything about an encoder that the files say, before (or without) loading its weights."""

    info: EncoderInfo
    folder: Path
    config: object  # the tower's config (the vision config of a VLM or a full SigLIP/CLIP checkpoint)
    cls: type
    processor: object
    weights: list  # weight files to read (a VLM: only those holding its vision tower)


def describe_encoder(id_or_path: str = DEFAULT_ENCODER, tokens: int = 0, dtype: str = "float16",
                     device: str = "cpu", revision: str | None = None) -> EncoderInfo:
    """The ``EncoderInfo`` that ``load_vision_encoder`` would produce, from the files alone (config, processor
    config, weight sha256s; the pooling from a weightless skeleton): what a driver needs to fingerprint a run and
    refuse bad input in one line, without loading the model."""
    return _resolve(id_or_path, tokens, dtype, device, revision).info


def _resolve(id_or_path: str, tokens: int, dtype: str, device: str, revision: str | None) -> _Resolved:
    import transformers
    from transformers import AutoConfig, AutoImageProcessor

    transformers.utils.logging.disable_progress_bar()
    if dtype not in STORAGE_DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
    if tokens < 0:
        raise InputError(f"--tokens must be >= 0, got {tokens}")
    folder, rev = resolve_encoder_dir(id_or_path, revision)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"encoder {id_or_path}: cannot read its config ({str(err).splitlines()[0][:160]})") from None
    mtype = config.model_type
    if mtype in _REFUSED:
        raise InputError(f"encoder {id_or_path}: {_REFUSED[mtype]}")
    qwen = _QWEN_VISUAL.get(mtype)
    if qwen:
        import importlib

        cls = getattr(importlib.import_module(f"transformers.models.{qwen[0]}.modeling_{qwen[0]}"), qwen[1])
        tower_cfg = config.vision_config
    else:
        cls_name = _VISION_TOWERS.get(mtype, "AutoModel")
        if cls_name.startswith("Siglip2") and tokens:
            raise InputError(f"encoder {id_or_path}: --tokens with SigLIP2 (variable-resolution patches) is not "
                             "supported yet; use the pooled embedding")
        cls = getattr(transformers, cls_name)
        tower_cfg = config.vision_config if cls_name != "AutoModel" and hasattr(config, "vision_config") else config
    try:
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"encoder {id_or_path}: no image processor it can load (preprocessor_config.json): "
                         f"{str(err).splitlines()[0][:160]}") from None
    weights = sorted(p for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES) and p.is_file())
    if not weights:
        raise InputError(f"encoder {id_or_path}: no weight files (*.safetensors) in {folder}")
    compute = "float32" if device == "cpu" else dtype
    extra = {"folder": str(folder), "transformers": transformers.__version__}
    if qwen:
        weights = _visual_weight_files(id_or_path, folder, weights)
        model_class, dim, pooling = qwen[1], int(getattr(tower_cfg, qwen[2])), "mean_merged_tokens"
        extra["weights_prefix"] = list(QWEN_VISUAL_PREFIXES)
    else:
        skeleton = _skeleton(cls, tower_cfg)
        model_class = type(skeleton).__name__
        tower_cfg = skeleton.config
        dim = int(getattr(tower_cfg, "hidden_size", 0) or tower_cfg.vision_config.hidden_size)
        pooling = "pooler_output" if _has_pooler(skeleton) and not _untrained_pooler(skeleton, weights) \
            else "mean_patch_tokens"
        del skeleton
    info = EncoderInfo(
        id=id_or_path, model_type=mtype, model_class=model_class, revision=rev,
        weights_sha256={p.name: _sha256(p) for p in weights},
        processor=json.loads(processor.to_json_string()), dim=dim, pooling=pooling,
        tokens=tokens, token_pooling="" if not tokens else ("adaptive_avg_2d" if math.isqrt(tokens) ** 2 == tokens
                                                            else "adaptive_avg_1d"),
        dtype=dtype, compute_dtype=compute, extra=extra)
    info.processor.pop("_processor_class", None)
    return _Resolved(info, folder, tower_cfg, cls, processor, weights)


def load_vision_encoder(id_or_path: str = DEFAULT_ENCODER, tokens: int = 0, dtype: str = "float16",
                        device: str = "cpu", revision: str | None = None) -> VisionEncoder:
    """Load a frozen vision tower and its own image processor, offline (local folder or local Hub cache)."""
    if device != "cpu" and not torch.cuda.is_available():
        raise InputError(f"encoder {id_or_path}: device {device!r} asked (--num-gpus) but torch sees no CUDA device")
    res = _resolve(id_or_path, tokens, dtype, device, revision)
    info, compute = res.info, getattr(torch, res.info.compute_dtype)
    if info.model_type in _QWEN_VISUAL:
        model = _load_visual_only(res, compute)
    else:
        try:
            model, loading = res.cls.from_pretrained(res.folder, local_files_only=True, dtype=compute,
                                                     output_loading_info=True)
        except (OSError, ValueError) as err:
            raise InputError(f"encoder {id_or_path}: cannot load its weights "
                             f"({str(err).splitlines()[0][:160]})") from None
        missing = sorted(k for k in loading.get("missing_keys", ())
                         if not (info.pooling == "mean_patch_tokens" and _is_pooler(k)))
        if missing:  # a frozen encoder with random weights would write plausible-looking garbage
            raise InputError(f"encoder {id_or_path}: its checkpoint lacks {len(missing)} weight(s) of "
                             f"{type(model).__name__} ({', '.join(missing[:3])}): they would be random")
    model.requires_grad_(False)
    model.to(device)
    wrapper = QwenVisualEncoder if info.model_type in _QWEN_VISUAL else VisionEncoder
    return wrapper(model, res.processor, info, device)


def _skeleton(cls: type, config) -> nn.Module:
    """The model built on the meta device: its class, config and output structure, no weights, no memory."""
    from transformers.initialization import no_init_weights

    with torch.device("meta"), no_init_weights():
        return cls.from_config(config) if cls.__name__.startswith("Auto") else cls._from_config(config)


def _has_pooler(model: nn.Module) -> bool:
    """Whether the forward returns a pooler output (one probe forward of the meta skeleton, no compute)."""
    cfg = model.config
    size = getattr(cfg, "image_size", 224)
    size = size if isinstance(size, int) else size[0]
    chans = getattr(cfg, "num_channels", 3)
    try:
        with torch.inference_mode():
            out = model(pixel_values=torch.zeros(1, chans, size, size, device="meta"))
        return getattr(out, "pooler_output", None) is not None
    except Exception:  # e.g. SigLIP2 needs its mask inputs: it has a MAP head
        return hasattr(model, "vision_model") and getattr(model.vision_model, "head", None) is not None


def _is_pooler(name: str) -> bool:
    return name.startswith("pooler.") or ".pooler." in name


def _untrained_pooler(skeleton: nn.Module, weights: list[Path]) -> bool:
    """A pooler layer the checkpoint has no weights for (e.g. DINO ViTs saved without one): transformers would
    initialise it randomly, so the pooled embedding is then the mean of the patch tokens. Read from the
    safetensors headers only; a .bin checkpoint is taken at its word."""
    if not any(_is_pooler(n) for n, _ in skeleton.named_parameters()):
        return False
    if not all(p.name.endswith(".safetensors") for p in weights):
        return False
    from safetensors import safe_open

    for p in weights:
        with safe_open(str(p), framework="pt") as st:  # the header only
            if any(_is_pooler(k) for k in st.keys()):
                return False
    return True


def _visual_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as st:  # reads the header only
        return [k for k in st.keys() if k.startswith(QWEN_VISUAL_PREFIXES)]


def _visual_weight_files(id_or_path: str, folder: Path, weights: list[Path]) -> list[Path]:
    """The weight files that hold the vision tower (the index's weight map when there is one, else the headers)."""
    weights = [p for p in weights if p.name.endswith(".safetensors")]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        wmap = json.loads(index.read_text()).get("weight_map", {})
        names = {f for k, f in wmap.items() if k.startswith(QWEN_VISUAL_PREFIXES)}
        found = [p for p in weights if p.name in names]
    else:
        found = [p for p in weights if _visual_keys(p)]
    if not found:
        raise InputError(f"encoder {id_or_path}: no vision tower weights (keys visual.* or model.visual.*) in its "
                         f"*.safetensors files in {folder}")
    return found


def _load_visual_only(res: _Resolved, dtype: torch.dtype) -> nn.Module:
    """Build the vision tower from the checkpoint's vision config and read only its tensors from the safetensors
    files (``model.visual.*`` or ``visual.*``): the language model is never built and its tensors never read."""
    from safetensors import safe_open
    from transformers.initialization import no_init_weights

    with no_init_weights():
        model = res.cls._from_config(res.config, dtype=dtype)
    state = {}
    for path in res.weights:
        with safe_open(str(path), framework="pt") as st:
            for k in st.keys():
                prefix = next((p for p in QWEN_VISUAL_PREFIXES if k.startswith(p)), None)
                if prefix:
                    state[k[len(prefix):]] = st.get_tensor(k).to(dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise InputError(f"encoder {res.info.id}: its vision tower weights do not match its vision config "
                         f"({len(missing)} missing, {len(unexpected)} unexpected; {what})")
    return model
