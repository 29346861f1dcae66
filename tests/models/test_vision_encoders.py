"""The vision encoder wrapper on tiny models built from configs (no network): the real from_pretrained path."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vlaflow.models import load_vision_encoder
from vlaflow.models.vision_encoders import describe_encoder, pool_tokens
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


_TINY_TEXT = dict(hidden_size=40, num_hidden_layers=1, intermediate_size=64, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=256, bos_token_id=0, eos_token_id=1,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 3]})


def save_tiny_qwen_vl(path, kind="qwen2_5_vl"):
    """A whole tiny Qwen2.5-VL (or Qwen2-VL) saved with save_pretrained (the Hub's key layout: visual.*, model.*,
    lm_head.*) and its image processor (14-px patches, merge 2, at most 112x112 pixels: 16 merged tokens)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLConfig, \
        Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    torch.manual_seed(2)
    if kind == "qwen2_5_vl":
        cfg = Qwen2_5_VLConfig(vision_config=dict(depth=2, hidden_size=32, intermediate_size=48, num_heads=4,
                                                  out_hidden_size=40, window_size=56, fullatt_block_indexes=[1]),
                               text_config=_TINY_TEXT, image_token_id=5, video_token_id=6,
                               vision_start_token_id=7, vision_end_token_id=8)
        Qwen2_5_VLForConditionalGeneration(cfg).save_pretrained(path)
    else:
        cfg = Qwen2VLConfig(vision_config=dict(depth=2, embed_dim=32, hidden_size=40, num_heads=4, mlp_ratio=2),
                            text_config=_TINY_TEXT, image_token_id=5, video_token_id=6,
                            vision_start_token_id=7, vision_end_token_id=8)
        Qwen2VLForConditionalGeneration(cfg).save_pretrained(path)
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112).save_pretrained(path)
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
    from transformers import Qwen3VLConfig

    Qwen3VLConfig().save_pretrained(tmp_path / "qwen")  # refused on its config: no weights needed
    for fn in (load_vision_encoder, describe_encoder):
        with pytest.raises(InputError, match="Qwen3-VL: its vision tower also returns deepstack features") as err:
            fn(str(tmp_path / "qwen"))
        assert "\n" not in str(err.value)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(InputError, match="not in the local Hugging Face cache") as err:
        load_vision_encoder("google/siglip-base-patch16-224")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="--dtype"):
        load_vision_encoder(str(tmp_path / "qwen"), dtype="int8")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        load_vision_encoder(str(tmp_path / "empty"))


def _record_reads(monkeypatch):
    """Every tensor read from a safetensors file, and a language model that raises if anything builds it."""
    import safetensors
    import transformers.models.qwen2_5_vl.modeling_qwen2_5_vl as q25
    import transformers.models.qwen2_vl.modeling_qwen2_vl as q2

    reads = []
    real_open = safetensors.safe_open

    class Recording:
        def __init__(self, *a, **kw):
            self.f = real_open(*a, **kw)

        def __enter__(self):
            self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def keys(self):
            return self.f.keys()

        def get_tensor(self, k):
            reads.append(k)
            return self.f.get_tensor(k)

    def no_llm(self, *a, **kw):
        raise AssertionError("the language model was built")

    monkeypatch.setattr(safetensors, "safe_open", Recording)
    for cls in (q25.Qwen2_5_VLTextModel, q25.Qwen2_5_VLForConditionalGeneration, q2.Qwen2VLTextModel,
                q2.Qwen2VLForConditionalGeneration):
        monkeypatch.setattr(cls, "__init__", no_llm)
    return reads


@pytest.mark.parametrize("kind", ["qwen2_5_vl", "qwen2_vl"])
def test_qwen_vl_vision_tower_alone_equals_get_image_features(tmp_path, monkeypatch, kind):
    from safetensors import safe_open
    from transformers import AutoImageProcessor, AutoModelForImageTextToText

    path = save_tiny_qwen_vl(tmp_path / kind, kind)
    with safe_open(str(path / "model.safetensors"), framework="pt") as st:
        keys = list(st.keys())
    assert any(k.startswith(("model.", "lm_head.")) and "visual" not in k for k in keys)  # an LLM is in the file
    imgs = [np.random.default_rng(3).integers(0, 256, (90, 120, 3), np.uint8)] + _images(2)
    with monkeypatch.context() as mp:
        reads = _record_reads(mp)
        enc = load_vision_encoder(str(path), tokens=4)
        pooled, toks = enc.encode(imgs)
    assert reads and all(k.startswith("visual.") for k in reads)  # only the vision tower's tensors were read
    assert sorted(reads) == sorted(k for k in keys if k.startswith("visual."))
    full = AutoModelForImageTextToText.from_pretrained(path).eval()  # the reference: the whole model
    visual = full.model.visual
    assert sum(p.numel() for p in enc.model.parameters()) == sum(p.numel() for p in visual.parameters())
    assert sum(p.numel() for p in full.parameters()) > sum(p.numel() for p in enc.model.parameters())
    batch = AutoImageProcessor.from_pretrained(path)(images=imgs, return_tensors="pt")
    grid = batch["image_grid_thw"]
    assert grid[:, 0].tolist() == [1, 1, 1] and (grid[0] != grid[1]).any()  # frames of different sizes
    with torch.no_grad():
        feats = full.get_image_features(batch["pixel_values"], image_grid_thw=grid).pooler_output
        direct = visual(batch["pixel_values"], grid_thw=grid).pooler_output
    assert [f.shape[0] for f in feats] == (grid.prod(-1) // 4).tolist()  # t·h·w / merge² tokens per image
    np.testing.assert_allclose(torch.cat(feats).numpy(), direct.numpy(), rtol=1e-5, atol=1e-6)
    want = np.stack([f.mean(0).numpy() for f in feats])
    np.testing.assert_allclose(pooled, want, rtol=1e-5, atol=1e-6)
    for f, (_, h, w), got in zip(feats, grid.tolist(), toks):  # k=4: the (h/2)x(w/2) token grid pooled to 2x2
        g = f.reshape(h // 2, w // 2, -1).permute(2, 0, 1)[None]
        np.testing.assert_allclose(got, torch.nn.functional.adaptive_avg_pool2d(g, 2).reshape(40, 4).T.numpy(),
                                   rtol=1e-5, atol=1e-6)
    info = enc.info
    assert (info.dim, info.pooling, info.model_type) == (40, "mean_merged_tokens", kind)
    assert set(info.weights_sha256) == {"model.safetensors"} and toks.shape == (3, 4, 40)
    assert describe_encoder(str(path), tokens=4).fingerprint() == info.fingerprint()


def test_qwen_vl_sharded_checkpoint_with_model_visual_keys(tmp_path, monkeypatch):
    """transformers >= 4.52 layout (model.visual.*, model.language_model.*) in shards: only the shard holding the
    vision tower is read and hashed; the features equal those of the Hub layout."""
    from safetensors.torch import load_file, save_file

    src = save_tiny_qwen_vl(tmp_path / "hub")
    ref = load_vision_encoder(str(src)).encode(_images(2))[0]
    new = tmp_path / "new"
    new.mkdir()
    for f in src.iterdir():
        if f.suffix == ".json":
            (new / f.name).write_bytes(f.read_bytes())
    sd = load_file(str(src / "model.safetensors"))
    vis = {"model." + k: v for k, v in sd.items() if k.startswith("visual.")}
    llm = {k.replace("model.", "model.language_model.", 1): v for k, v in sd.items() if not k.startswith("visual.")}
    save_file(llm, str(new / "model-00001-of-00002.safetensors"), metadata={"format": "pt"})
    save_file(vis, str(new / "model-00002-of-00002.safetensors"), metadata={"format": "pt"})
    wmap = {**dict.fromkeys(llm, "model-00001-of-00002.safetensors"),
            **dict.fromkeys(vis, "model-00002-of-00002.safetensors")}
    (new / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wmap}))
    with monkeypatch.context() as mp:
        reads = _record_reads(mp)
        enc = load_vision_encoder(str(new))
        got = enc.encode(_images(2))[0]
    assert sorted(reads) == sorted(vis)
    np.testing.assert_array_equal(got, ref)
    assert set(enc.info.weights_sha256) == {"model-00002-of-00002.safetensors"}
    (new / "model-00002-of-00002.safetensors").unlink()
    wmap = dict.fromkeys(llm, "model-00001-of-00002.safetensors")
    (new / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wmap}))
    with pytest.raises(InputError, match="no vision tower weights"):
        load_vision_encoder(str(new))


def test_describe_encoder_reads_files_not_weights(tmp_path, monkeypatch):
    """The driver's fingerprint comes from the files: no weight tensor is read, no model is loaded."""
    import safetensors
    import transformers

    sig = save_tiny_siglip(tmp_path / "sig")
    dino = save_tiny_dinov2(tmp_path / "dino")
    loaded = {n: load_vision_encoder(str(p), tokens=4).info.fingerprint() for n, p in (("sig", sig), ("dino", dino))}

    def refuse(*a, **kw):
        raise AssertionError("weights were loaded")

    reads = _record_reads(monkeypatch)  # safetensors headers may be read, no tensor
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(safetensors.safe_open, "get_tensor", refuse)
    for n, p in (("sig", sig), ("dino", dino)):
        assert describe_encoder(str(p), tokens=4).fingerprint() == loaded[n]
    assert loaded["sig"]["pooling"] == loaded["dino"]["pooling"] == "pooler_output" and reads == []


def test_a_checkpoint_without_pooler_weights_pools_patch_tokens_and_missing_weights_are_refused(tmp_path):
    """A ViT saved without its pooler (DINO v1 checkpoints) would get a random pooler: the mean of the patch
    tokens is used instead; any other weight missing from the checkpoint is refused (random features)."""
    from safetensors.torch import load_file, save_file
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(4)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=1, num_attention_heads=4,
                    intermediate_size=32)
    ViTModel(cfg, add_pooling_layer=False).save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    enc = load_vision_encoder(str(tmp_path / "vit"), tokens=4)
    assert enc.info.pooling == "mean_patch_tokens" == describe_encoder(str(tmp_path / "vit")).pooling
    pooled, toks = enc.encode(_images(2))
    with torch.no_grad():
        out = ViTModel.from_pretrained(tmp_path / "vit", add_pooling_layer=False).eval()(
            **enc.preprocess(_images(2)))
    np.testing.assert_allclose(pooled, out.last_hidden_state[:, 1:].mean(1).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(toks, pool_tokens(out.last_hidden_state[:, 1:], 4).numpy(), rtol=1e-5, atol=1e-5)
    sd = load_file(str(tmp_path / "vit/model.safetensors"))
    sd.pop("encoder.layer.0.attention.attention.query.weight")
    save_file(sd, str(tmp_path / "vit/model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(InputError, match="lacks 1 weight.*would be random") as err:
        load_vision_encoder(str(tmp_path / "vit"))
    assert "\n" not in str(err.value)
