"""The VLA model (flow head): shapes, strict masking, overfitting, truncation/freezing, checkpoints.

Samples come from ``models/vla/synthetic.py``: real embodiment specs (slots, prompts), values in their
units normalized with the real statistics and Normalizer, as the train feed produces them.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vlaflow.models.vla import ConfigError, VLAConfig, VLAModel
from vlaflow.models.vla import synthetic as syn
from vlaflow.schemas import ACTION, get_embodiment

EMBODIMENTS = ("widowx_250", "human_hands", "nav_habitat_15deg")
H, VD = 4, 16


def small_config(**kw) -> VLAConfig:
    base = dict(embodiments=EMBODIMENTS, vision_dim=VD, vision_tokens=2, cameras=("primary", "wrist"), horizon=H,
                dit_layers=2, dit_heads=2, dit_head_dim=16, dit_hidden=32, num_inference_steps=3)
    base.update(kw)
    return VLAConfig(**base)


def make_samples(n_per: int = 2, seed: int = 0, embodiments=EMBODIMENTS, cameras: int = 2) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = {("synth", e): syn.raw_rows(get_embodiment(e), n_per, H, rng) for e in embodiments}
    stats = syn.stats_for(rows)
    out = []
    for (ds, e), r in rows.items():
        out += syn.to_samples(r, get_embodiment(e), ds, stats, vision_shape=(cameras, 2, VD), rng=rng)
    return out


@pytest.fixture(scope="module")
def model_and_batch():
    torch.manual_seed(0)
    model = VLAModel(small_config())
    samples = make_samples()
    samples[1]["vision_mask"] = np.array([True, False])  # a missing wrist camera
    return model, samples, model.processor()(samples)


def test_batch_and_output_shapes(model_and_batch):
    model, samples, batch = model_and_batch
    b, a = len(samples), model.config.action_dim
    assert a == 154 + 106
    assert set(batch) == {"input_ids", "attention_mask", "labels", "vision", "vision_mask", "state", "state_mask",
                          "target", "target_mask", "embodiment_id", "family_id"}
    assert batch["target"].shape == (b, H, a) and batch["target_mask"].dtype == torch.bool
    assert batch["vision"].shape == (b, 2, 2, VD) and batch["vision_mask"].shape == (b, 2)
    assert batch["embodiment_id"].tolist() == [0, 0, 1, 1, 2, 2]
    assert (batch["labels"] == -100).all()  # flow head: no LM targets
    out = model(batch)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert {"loss/manipulation", "loss/egocentric", "loss/navigation"} <= set(out)
    actions = model.sample_actions(batch)
    assert actions.shape == (b, H, a) and torch.isfinite(actions).all()


def test_ego_rows_are_supervised_on_their_trajectory_part(model_and_batch):
    _, samples, batch = model_and_batch
    aw = ACTION.width
    tm = batch["target_mask"]
    robot, ego = 0, 2
    assert tm[robot, :, :aw].any() and not tm[robot, :, aw:].any()
    assert tm[ego, :, aw:].any()


def test_loss_is_the_masked_mean_over_all_families(model_and_batch):
    """The total is sum(mask·err²)/mask.sum() over the batch; per-family losses partition it."""
    model, _, batch = model_and_batch
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(batch["target"].shape, generator=g)
    t = torch.rand(batch["target"].shape[0], generator=g)
    out = model(batch, noise=noise, time=t)
    fam = batch["family_id"]
    counts = {f: int(batch["target_mask"][fam == f].sum()) for f in fam.unique().tolist()}
    names = {0: "manipulation", 1: "navigation", 2: "egocentric"}
    weighted = sum(out[f"loss/{names[f]}"] * n for f, n in counts.items()) / sum(counts.values())
    assert float(out["loss"].detach()) == pytest.approx(weighted, rel=1e-5)


def _loss_and_grads(model, batch, noise, t):
    model.zero_grad(set_to_none=True)
    out = model(batch, noise=noise, time=t)
    out["loss"].backward()
    return out["loss"].detach().clone(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_padded_slots_contribute_exactly_zero(model_and_batch):
    """Garbage (huge values, NaN) in padded target/noise/state/camera slots leaves loss and every gradient
    bit-identical: padding is selected out, never multiplied in."""
    model, _, batch = model_and_batch
    model.train()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(batch["target"].shape, generator=g)
    t = torch.rand(batch["target"].shape[0], generator=g)
    loss, grads = _loss_and_grads(model, batch, noise, t)

    dirty = dict(batch)
    tm, sm, vm = batch["target_mask"], batch["state_mask"], batch["vision_mask"]
    junk = torch.full_like(batch["target"], 1e6)
    junk[0, 0, -1] = float("nan")
    dirty["target"] = torch.where(tm, batch["target"], junk)
    dirty["state"] = torch.where(sm, batch["state"], torch.full_like(batch["state"], -3e5))
    dirty["vision"] = torch.where(vm[:, :, None, None], batch["vision"], torch.full_like(batch["vision"], 7e4))
    dirty_noise = torch.where(tm, noise, torch.full_like(noise, float("nan")))
    loss2, grads2 = _loss_and_grads(model, dirty, dirty_noise, t)

    assert torch.equal(loss, loss2)
    assert grads.keys() == grads2.keys() and len(grads) > 10
    for k in grads:
        assert torch.equal(grads[k], grads2[k]), k

    # and a real slot does matter (the test can fail)
    moved = dict(batch)
    moved["target"] = batch["target"] + tm.float() * 0.5
    assert not torch.equal(model(moved, noise=noise, time=t)["loss"], loss)


def test_sampled_chunks_are_exactly_zero_outside_the_mask(model_and_batch):
    model, _, batch = model_and_batch
    model.eval()
    tm = batch["target_mask"]
    actions = model.sample_actions(batch, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert (actions[~tm] == 0).all()
    assert (actions[tm] != 0).float().mean() > 0.99
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1"):
        model.sample_actions(batch, num_steps=0)


def test_t_repeat_trains_several_draws_per_backbone_pass():
    torch.manual_seed(0)
    model = VLAModel(small_config(t_repeat=3))
    batch = model.processor()(make_samples(1))
    out = model(batch)
    assert torch.isfinite(out["loss"])
    with pytest.raises(RuntimeError):  # the fixed draw must cover the repeated batch
        model(batch, noise=torch.zeros(batch["target"].shape), time=torch.zeros(3))


def test_overfits_a_tiny_batch():
    """200 AdamW steps on one arm row and one navigation row: the training loss and the error of the
    sampled chunks both fall well below where they started (GR00T-style heads need thousands of steps to
    converge; this checks that every part learns, fast)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only contend
    try:
        torch.manual_seed(0)
        cfg = small_config(embodiments=("widowx_250", "jackal"), vision="none", t_repeat=4, dit_hidden=64,
                           dit_heads=2, dit_head_dim=32)
        model = VLAModel(cfg)
        batch = model.processor()(make_samples(1, embodiments=cfg.embodiments))
        tm = batch["target_mask"]

        def sample_error():
            model.eval()
            pred = model.sample_actions(batch, generator=torch.Generator().manual_seed(0))
            model.train()
            return float(((pred - batch["target"])[tm] ** 2).mean())

        before = sample_error()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        losses = []
        for _ in range(200):
            loss = model(batch, generator=g)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        after = sample_error()
    finally:
        torch.set_num_threads(threads)
    assert np.mean(losses[-10:]) < 0.65 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    assert after < 0.65 * before, (before, after)


# --------------------------------------------------------------------------- config
def test_config_round_trip_and_one_line_errors(tmp_path):
    cfg = small_config(time_beta=(2.0, 1.0), backbone_layers=1)
    cfg.save(tmp_path / "config.json")
    again = VLAConfig.load(tmp_path / "config.json")
    assert again == cfg and isinstance(again.cameras, tuple)
    with pytest.raises(ConfigError, match="dit_layer: unknown key .*dit_layers"):
        VLAConfig.from_dict({"dit_layer": 3})
    with pytest.raises(ConfigError, match="head: 'diffusion' is not one of"):
        VLAConfig(head="diffusion")
    with pytest.raises(ConfigError, match="freeze_backbone"):
        VLAConfig(head="discrete", freeze_backbone=True)
    with pytest.raises(KeyError, match="'franka' is not one this model was built for"):
        small_config().embodiment_id("franka")


# --------------------------------------------------------------------------- checkpoints
def test_save_load_round_trip_gives_identical_outputs(model_and_batch, tmp_path):
    model, _, batch = model_and_batch
    model.eval()
    model.save_pretrained(tmp_path / "ckpt")
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"config.json", "model.safetensors", "tokenizer",
                                                               "backbone"}
    loaded = VLAModel.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    assert loaded.tokenizer.get_vocab() == model.tokenizer.get_vocab()
    a = model.sample_actions(batch, generator=torch.Generator().manual_seed(5))
    b = loaded.sample_actions(batch, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(2)
    noise, t = torch.randn(batch["target"].shape, generator=g), torch.rand(len(batch["target"]), generator=g)
    assert torch.equal(model(batch, noise=noise, time=t)["loss"], loaded(batch, noise=noise, time=t)["loss"])
    # the processor of the loaded checkpoint tokenizes identically
    assert torch.equal(loaded.processor()(make_samples())["input_ids"], batch["input_ids"])


def test_a_truncated_checkpoint_is_not_a_load_of_pickles(tmp_path):
    torch.manual_seed(0)
    model = VLAModel(small_config())
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(Exception):
        VLAModel.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        VLAModel.from_pretrained(tmp_path)


# --------------------------------------------------------------------------- pretrained backbones
def _save_qwen(folder, arch: str, layers: int = 4):
    """A tiny randomly initialised Qwen checkpoint written with transformers' own save_pretrained."""
    import transformers

    from vlaflow.models.vla import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    cfg_cls = getattr(transformers, f"{arch}Config")
    lm_cls = getattr(transformers, f"{arch}ForCausalLM")
    kw = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
              num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    if arch == "Qwen3":
        kw["head_dim"] = 16
    torch.manual_seed(1)
    lm = lm_cls(cfg_cls(**kw))
    lm.save_pretrained(folder)
    tok.save_pretrained(folder)
    return lm


@pytest.mark.parametrize("arch", ["Qwen3", "Qwen2"])
def test_from_pretrained_backbone_truncated_and_frozen(tmp_path, arch):
    lm = _save_qwen(tmp_path / "qwen", arch)
    cfg = small_config(backbone=str(tmp_path / "qwen"), backbone_layers=2, freeze_backbone=True)
    torch.manual_seed(0)
    model = VLAModel(cfg)
    bb = model.backbone
    assert bb.num_layers == 2 and bb.lm.config.num_hidden_layers == 2 and bb.hidden_size == 32
    # the loaded weights are the checkpoint's (first two layers)
    assert torch.equal(bb.lm.model.layers[1].mlp.up_proj.weight, lm.model.layers[1].mlp.up_proj.weight)
    assert torch.equal(bb.lm.get_input_embeddings().weight, lm.get_input_embeddings().weight)
    # frozen: the LM has no trainable parameter, projectors and head do
    assert not any(p.requires_grad for p in bb.lm.parameters())
    assert all(p.requires_grad for p in bb.state_proj.parameters()) and model.num_parameters(True) > 0
    batch = model.processor()(make_samples(1))
    before = {k: v.clone() for k, v in bb.lm.state_dict().items()}
    head_before = model.action_head.action_decoder.layer2.W.clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    model(batch)["loss"].backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in bb.lm.state_dict().items())
    assert not torch.equal(head_before, model.action_head.action_decoder.layer2.W)
    assert not bb.lm.training  # a frozen LM stays in eval mode

    # the checkpoint carries the truncated LM: loading needs neither the original folder nor 4 layers
    model.eval()
    model.save_pretrained(tmp_path / "ckpt")
    import shutil

    shutil.rmtree(tmp_path / "qwen")
    loaded = VLAModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.backbone.num_layers == 2
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(model.sample_actions(batch, generator=g()), loaded.sample_actions(batch, generator=g()))


def test_truncating_past_the_depth_is_a_clear_error(tmp_path):
    _save_qwen(tmp_path / "qwen", "Qwen3", layers=2)
    with pytest.raises(ValueError, match="backbone_layers=5 but the backbone has only 2"):
        VLAModel(small_config(backbone=str(tmp_path / "qwen"), backbone_layers=5))
    with pytest.raises(ValueError, match="cannot load it offline"):
        VLAModel(small_config(backbone=str(tmp_path / "missing"), tokenizer=str(tmp_path / "qwen")))


def test_bfloat16_backbone_with_a_float32_head(tmp_path):
    """A 2B backbone is kept in bf16: the LM runs in bf16, projectors/DiT stay fp32, checkpoints keep dtypes."""
    torch.manual_seed(0)
    model = VLAModel(small_config(backbone_dtype="bfloat16"))
    assert model.backbone.lm.dtype == torch.bfloat16
    assert model.action_head.dit.proj_out_2.weight.dtype == torch.float32
    batch = model.processor()(make_samples(1))
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["loss"].dtype == torch.float32
    assert model.backbone.lm.get_input_embeddings().weight.grad.dtype == torch.bfloat16
    model.eval().save_pretrained(tmp_path)
    loaded = VLAModel.from_pretrained(tmp_path).eval()
    assert loaded.backbone.lm.dtype == torch.bfloat16
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(model.sample_actions(batch, generator=g()), loaded.sample_actions(batch, generator=g()))


def test_cross_attention_cache_changes_nothing(model_and_batch):
    """sample_actions reuses the cross-attention keys/values over its Euler steps: same velocity as without."""
    model, _, batch = model_and_batch
    model.eval()
    with torch.no_grad():
        hidden, mask, _, _ = model.encode(model._to_device(batch))
        ctx = model.action_head.condition(hidden)
        x = torch.randn(batch["target"].shape)
        t = torch.full((len(x),), 0.25)
        args = (x, t, ctx, mask, batch["state"], batch["state_mask"], batch["target_mask"], batch["embodiment_id"])
        plain = model.action_head.velocity(*args)
        cached = model.action_head.velocity(*args, kv_cache=model.action_head.dit.cross_kv(ctx))
    assert torch.equal(plain, cached)


def test_processor_truncates_long_prompts_and_names_bad_input():
    from vlaflow.models.vla import VLAProcessor

    cfg = small_config(max_prompt_tokens=24)
    proc = VLAProcessor(cfg)
    s = make_samples(1)[0]
    s["instruction"] = "pick up the red block and put it in the bowl " * 20
    batch = proc([s, make_samples(1)[1]])
    assert batch["input_ids"].shape[1] == 24 and batch["attention_mask"][0].sum() == 24
    tail = proc.tokenizer.decode(batch["input_ids"][0][-4:])
    assert tail.endswith("assistant\n")  # the generation header survives truncation
    bad = dict(s, vision=np.zeros((1, 2, VD)))
    with pytest.raises(ValueError, match=r"vision features of shape \(1, 2, 16\) do not match the model"):
        proc([bad])
    with pytest.raises(ValueError, match="unknown task family 'cooking'"):
        proc([dict(s, task_family="cooking")])
    with pytest.raises(KeyError, match="'ur5' is not one this model was built for"):
        proc([dict(s, embodiment="ur5")])


def test_state_dropout_hides_the_state_in_training_only(model_and_batch):
    model, _, batch = model_and_batch
    head = model.action_head
    with torch.no_grad():
        hidden, mask, _, _ = model.encode(model._to_device(batch))
        ctx = head.condition(hidden)
        x, t = torch.randn(batch["target"].shape), torch.full((len(batch["target"]),), 0.5)

        def v(state):
            return head.velocity(x, t, ctx, mask, state, batch["state_mask"], batch["target_mask"],
                                 batch["embodiment_id"])

        other = batch["state"] + 1.0
        head.state_dropout = 1.0  # every row dropped (the config allows up to < 1)
        try:
            head.train()
            assert torch.equal(v(batch["state"]), v(other))
            head.eval()
            assert not torch.equal(v(batch["state"]), v(other))
        finally:
            head.state_dropout = 0.0
            head.eval()


def test_alternate_vl_dit_masks_and_outputs():
    """GR00T's AlternateVLDiT: cross block 0 sees the state + text, block 2 the vision tokens; a row with no
    camera keeps its whole context there (never an all-masked attention row)."""
    from vlaflow.models.vla.dit import DiT

    torch.manual_seed(0)
    model = VLAModel(small_config(dit_layers=4, dit_alternate_vl=True))
    samples = make_samples(1)
    samples[1]["vision_mask"] = np.array([False, False])
    batch = model.processor()(samples)
    hidden, mask, prefix_len, _ = model.encode(batch)
    assert prefix_len == 1 + 2 * 2  # state token + 2 cameras x 2 tokens
    img = model.image_mask(mask, prefix_len)
    masks = DiT.block_masks(mask, img, 4)
    text, image = masks[0], masks[2]
    assert not text[:, 1:prefix_len].any() and text[:, 0].all() and text[:, prefix_len:].equal(mask[:, prefix_len:])
    assert image[0].equal(mask[0] & img[0]) and image[0].sum() == 4
    assert image[1].equal(mask[1])  # no camera in row 1: its whole context
    model.eval()
    out = model.sample_actions(batch, generator=torch.Generator().manual_seed(0))
    tm = batch["target_mask"]
    assert torch.isfinite(out).all() and (out[~tm] == 0).all()
    moved = dict(batch, vision=batch["vision"] + 1.0)
    again = model.sample_actions(moved, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(out[0], again[0])  # the image blocks see the cameras
    assert torch.isfinite(model(batch)["loss"])
