"""``vision="encoder"``: raw frames through a frozen encoder inside the model give what precomputed features
give, and predict takes images (tiny SigLIP built from a config and saved: the real from_pretrained path)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from vlaflow.models import load_vision_encoder
from vlaflow.models.vla import VLAConfig, VLAModel, load_policy
from vlaflow.models.vla import synthetic as syn
from vlaflow.schemas import get_embodiment

H = 2
CAMS = ("primary", "wrist")


def save_tiny_siglip(path):
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    SiglipVisionModel(SiglipVisionConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=37)).save_pretrained(path)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


def png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    enc = save_tiny_siglip(tmp_path_factory.mktemp("siglip"))
    rng = np.random.default_rng(0)
    e = get_embodiment("widowx_250")
    rows = syn.raw_rows(e, 2, H, rng)
    stats = syn.stats_for({("synth", e.id): rows})
    samples = syn.to_samples(rows, e, "synth", stats)
    frames = [rng.integers(0, 256, (40, 48, 3), np.uint8) for _ in range(3)]
    samples[0]["images"] = [png(frames[0]), frames[1]]  # bytes and an array
    samples[1]["images"] = [frames[2], None]  # the wrist camera is missing
    return enc, samples, frames, stats


def test_encoder_mode_equals_precomputed_features(setup):
    enc, samples, frames, _ = setup
    kw = dict(vision_encoder=enc, vision_dim=32, vision_tokens=4, cameras=CAMS, horizon=H, dit_layers=2,
              dit_heads=2, dit_head_dim=16, dit_hidden=32, embodiments=("widowx_250",))
    torch.manual_seed(0)
    raw = VLAModel(VLAConfig(vision="encoder", **kw))
    batch = raw.processor()(samples)
    assert batch["pixel_values"].shape == (2, 2, 3, 32, 32)
    assert batch["vision_mask"].tolist() == [[True, True], [True, False]]
    assert not any(p.requires_grad for p in raw.vision_encoder.parameters())

    # the same model on features computed by the features stage's encoder wrapper
    feat_model = VLAModel(VLAConfig(vision="features", **kw))
    feat_model.load_state_dict(raw.state_dict(), strict=False)
    encoder = load_vision_encoder(enc, tokens=4)
    _, toks = encoder.encode(frames)
    fs = [dict(s) for s in samples]
    fs[0]["vision"], fs[0]["vision_mask"] = np.stack([toks[0], toks[1]]), np.array([True, True])
    fs[1]["vision"], fs[1]["vision_mask"] = np.stack([toks[2], np.zeros_like(toks[2])]), np.array([True, False])
    fbatch = feat_model.processor()(fs)

    g = torch.Generator().manual_seed(0)
    noise, t = torch.randn(batch["target"].shape, generator=g), torch.rand(2, generator=g)
    raw.train()
    out = raw(batch, noise=noise, time=t)
    out["loss"].backward()  # frozen encoder output feeds trainable projectors: gradients flow
    assert raw.backbone.vision_proj[0].weight.grad.abs().sum() > 0
    ref = feat_model(fbatch, noise=noise, time=t)
    assert float(out["loss"].detach()) == pytest.approx(float(ref["loss"].detach()), rel=1e-4)


def test_encoder_checkpoint_predicts_from_images(setup, tmp_path):
    enc, samples, frames, stats = setup
    torch.manual_seed(0)
    model = VLAModel(VLAConfig(vision="encoder", vision_encoder=enc, vision_dim=32, cameras=CAMS, horizon=H,
                               dit_layers=2, dit_hidden=32, embodiments=("widowx_250",)))
    model.save_pretrained(tmp_path)
    assert not any(k.startswith("vision_encoder.") for k in model._savable_state())
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    (tmp_path / "embodiments.json").write_text(json.dumps([get_embodiment("widowx_250").to_dict()]))
    policy = load_policy(tmp_path)
    a = policy.predict({"images": {"primary": png(frames[0])}}, "pick", "widowx_250", seed=0)
    b = policy.predict({"images": {"primary": frames[0]}}, "pick", "widowx_250", seed=0)
    c = policy.predict({"images": {"primary": frames[2]}}, "pick", "widowx_250", seed=0)
    assert set(a) == {"arm.eef_pos_delta", "arm.eef_rot_delta", "arm.gripper"}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.array_equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("kind", ["siglip", "clip"])
def test_uint8_pixels_normalized_in_the_model_equal_the_processor_bit_for_bit(setup, tmp_path, kind):
    """Frames leave preprocessing as uint8 (resize/crop only); the model's PixelNormalizer gives exactly the float32
    the encoder's own processor would (SigLIP: plain resize; CLIP: shortest-edge resize + center crop)."""
    from transformers import AutoImageProcessor, CLIPImageProcessor, CLIPVisionConfig

    from vlaflow.models.vla.vision import PixelNormalizer, preprocess_frames

    enc, _, frames, _ = setup
    if kind == "clip":
        enc = str(tmp_path / "clip")
        CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, num_attention_heads=4).save_pretrained(enc)
        CLIPImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}).save_pretrained(enc)
    pv, mask = preprocess_frames(enc, [[png(frames[0]), frames[1]], [frames[2], None]])
    assert pv.dtype == np.uint8 and pv.shape == (2, 2, 3, 32, 32) and mask.tolist() == [[True, True], [True, False]]
    proc = AutoImageProcessor.from_pretrained(enc)
    want = proc(images=[frames[0], frames[1], frames[2]], return_tensors="np")["pixel_values"]
    got = PixelNormalizer(enc)(torch.from_numpy(pv).flatten(0, 1)[:3]).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
