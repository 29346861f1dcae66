"""The vision encoder wrapper on tiny models built from configs (no network): the real from_pretrained path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vlaflow.models import load_vision_encoder
from vlaflow.models.vision_encoders import pool_tokens
from vlaflow.schemas import InputError


def save_tiny_siglip(path):
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    SiglipVisionModel(SiglipVisionConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=37)).save_pretrained(path)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def save_tiny_dinov2(path):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(1)
    Dinov2Model(Dinov2Config(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=40)).save_pretrained(path)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def _images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40 + 4 * i, 48, 3), np.uint8) for i in range(n)]


def test_siglip_pooled_and_tokens_equal_a_direct_forward(tmp_path):
    from transformers import AutoImageProcessor, SiglipVisionModel

    path = save_tiny_siglip(tmp_path / "sig")
    enc = load_vision_encoder(str(path), tokens=4)
    imgs = _images()
    pooled, toks = enc.encode(imgs)
    model = SiglipVisionModel.from_pretrained(path).eval()
    proc = AutoImageProcessor.from_pretrained(path)
    with torch.no_grad():
        out = model(**proc(images=imgs, return_tensors="pt"))
    np.testing.assert_allclose(pooled, out.pooler_output.numpy(), rtol=1e-5, atol=1e-5)
    grid = out.last_hidden_state.reshape(3, 4, 4, 32)  # 16 patches, no CLS; 2x2 pooling of the 4x4 grid
    want = grid.reshape(3, 2, 2, 2, 2, 32).mean((2, 4)).reshape(3, 4, 32)
    np.testing.assert_allclose(toks, want.numpy(), rtol=1e-5, atol=1e-5)
    info = enc.info
    assert (info.model_class, info.pooling, info.dim, info.revision) == ("SiglipVisionModel", "pooler_output", 32, "local")
    assert set(info.weights_sha256) == {"model.safetensors"} and len(info.weights_sha256["model.safetensors"]) == 64
    assert info.processor["size"] == {"height": 32, "width": 32} and info.dtype == "float16"


def test_dinov2_drops_cls_from_tokens(tmp_path):
    from transformers import Dinov2Model

    path = save_tiny_dinov2(tmp_path / "dino")
    enc = load_vision_encoder(str(path), tokens=3)  # not a square: 1D pooling over the 16 patch tokens
    pooled, toks = enc.encode(_images(2))
    pv = enc.preprocess(_images(2))["pixel_values"]
    with torch.no_grad():
        out = Dinov2Model.from_pretrained(path).eval()(pixel_values=pv)
    np.testing.assert_allclose(pooled, out.pooler_output.numpy(), rtol=1e-5, atol=1e-5)
    patches = out.last_hidden_state[:, 1:]  # CLS dropped
    assert patches.shape[1] == 16 and toks.shape == (2, 3, 24)
    np.testing.assert_allclose(toks, pool_tokens(patches, 3).numpy(), rtol=1e-5, atol=1e-5)
    assert enc.info.token_pooling == "adaptive_avg_1d"


def test_refusals_are_one_line(tmp_path, monkeypatch):
    from transformers import Qwen2_5_VLConfig

    Qwen2_5_VLConfig().save_pretrained(tmp_path / "qwen")
    with pytest.raises(InputError, match="Qwen2.5-VL vision tower is not supported yet"):
        load_vision_encoder(str(tmp_path / "qwen"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(InputError, match="not in the local Hugging Face cache") as err:
        load_vision_encoder("google/siglip-base-patch16-224")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="--dtype"):
        load_vision_encoder(str(tmp_path / "qwen"), dtype="int8")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        load_vision_encoder(str(tmp_path / "empty"))
