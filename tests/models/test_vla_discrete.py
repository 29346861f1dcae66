"""The discrete head (action tokens in the LM vocabulary) and the LM-loss path VL rows share."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vlaflow.models.vla import VLAConfig, VLAModel
from vlaflow.models.vla import synthetic as syn
from vlaflow.models.vla.processor import own_dims
from vlaflow.schemas import get_embodiment
from vlaflow.tokenization.prompts import IGNORE
from vlaflow.tokenization.tokenizers.bins import UniformBins

H = 2


def samples(n: int, embodiment: str = "widowx_250", seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    e = get_embodiment(embodiment)
    rows = syn.raw_rows(e, n, H, rng)
    out = syn.to_samples(rows, e, "synth", syn.stats_for({("synth", embodiment): rows}))
    for i, s in enumerate(out):
        s["instruction"] = ["pick up the cup", "open the drawer", "wipe the table"][i % 3]
    return out


def discrete_config(**kw) -> VLAConfig:
    base = dict(head="discrete", vision="none", horizon=H, discrete_bins=32, embodiments=("widowx_250",))
    base.update(kw)
    return VLAConfig(**base)


def test_labels_are_the_action_tokens_of_the_supervised_values():
    torch.manual_seed(0)
    model = VLAModel(discrete_config())
    proc = model.processor()
    s = samples(1)[0]
    s["target_mask"][1] = False  # the second step lies past the episode's end
    batch = proc([s])
    dims = own_dims(s["target_mask"])
    assert len(dims) == 7  # widowx: eef_pos_delta, eef_rot_delta, gripper
    ids = model.action_tokens.ids
    row_ids, row_labels = batch["input_ids"][0], batch["labels"][0]
    in_range = ids.contains(row_ids.numpy())
    assert in_range.sum() == H * 7  # one token per (step, own dim), masked steps included in the input
    labelled = row_labels[torch.from_numpy(in_range)]
    assert (labelled[:7] != IGNORE).all() and (labelled[7:] == IGNORE).all()  # masked step: no label
    decoded = model.action_tokens.decode(labelled[:7].numpy(), 7)
    assert np.abs(decoded[0] - s["target"][0, dims]).max() <= UniformBins(32).max_error + 1e-6
    # the template's end of turn is learned too (generation knows where to stop)
    assert (row_labels != IGNORE).sum() > 7


def test_discrete_round_trip_overfit_decode_save_load(tmp_path):
    """Train on 2 rows until the greedy decode reproduces their tokens; decoded chunks sit within half a
    bin of the targets, exactly 0 elsewhere; a saved checkpoint decodes the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = VLAModel(discrete_config())
        proc = model.processor()
        data = samples(2)
        batch = proc(data)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(80):
            out = model(batch)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        assert float(out["loss"].detach()) < 0.05 and "loss/manipulation" in out
        model.eval()
        query = proc(data, with_target=False)
        assert (query["labels"] == IGNORE).all()
        pred = model.sample_actions(query)
    finally:
        torch.set_num_threads(threads)
    tm = query["target_mask"]
    assert (pred[~tm] == 0).all()
    err = (pred - query["target"])[tm].abs().max()
    assert float(err) <= UniformBins(32).max_error + 1e-5
    model.save_pretrained(tmp_path)
    again = VLAModel.from_pretrained(tmp_path).eval()
    assert torch.equal(again.sample_actions(query), pred)


def test_fast_tokens_round_trip_through_the_processor(tmp_path):
    from vlaflow.tokenization.tokenizers.fast import FASTTokenizer

    data = samples(3)
    chunks = [s["target"][:, own_dims(s["target_mask"])] for s in samples(40, seed=1)]
    FASTTokenizer.fit(chunks, vocab_size=256, scale=10.0).save(tmp_path / "fast")
    torch.manual_seed(0)
    model = VLAModel(discrete_config(discrete_tokenizer="fast", fast_tokenizer=str(tmp_path / "fast")))
    batch = model.processor()(data)
    ids = model.action_tokens.ids
    for i, s in enumerate(data):
        dims = own_dims(s["target_mask"])
        toks = batch["input_ids"][i][torch.from_numpy(ids.contains(batch["input_ids"][i].numpy()))]
        assert (batch["labels"][i][torch.from_numpy(ids.contains(batch["input_ids"][i].numpy()))] == toks).all()
        chunk, ok = model.action_tokens.decode_with_status(toks.numpy(), len(dims), H)
        assert ok and np.sqrt(((chunk - s["target"][:, dims]) ** 2).mean()) <= 0.5 / 10.0
    # the fitted FAST tokenizer travels with the checkpoint
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt/fast_tokenizer").is_dir()
    again = VLAModel.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(again.processor()(data)["input_ids"], batch["input_ids"])


def test_vision_language_rows_train_only_the_lm_loss():
    """Issue-17 hook: a row with a conversation and no action target gets labels on the assistant turn,
    reports loss/vision_language, and adds nothing to the flow loss of the action rows beside it."""
    torch.manual_seed(0)
    cfg = VLAConfig(vision="none", horizon=H, embodiments=("widowx_250",), dit_layers=2, dit_hidden=32,
                    dit_heads=2, dit_head_dim=16)
    model = VLAModel(cfg)
    proc = model.processor()
    act = samples(1)[0]
    vl = dict(act, task_family="vision_language", embodiment="no_body", target_mask=np.zeros_like(act["target_mask"]),
              state_mask=np.zeros_like(act["state_mask"]),
              conversation=[{"role": "user", "text": "<image>\nWhat is on the table?"},
                            {"role": "assistant", "text": "a red cup"}])
    batch = proc([act, vl])
    lab = batch["labels"]
    assert (lab[0] == IGNORE).all() and (lab[1] != IGNORE).any()
    assert batch["embodiment_id"].tolist() == [0, 0]  # a VL row needs no per-embodiment layer
    answer = model.tokenizer.decode(lab[1][lab[1] != IGNORE])
    assert answer.startswith("a red cup") and "What is" not in answer
    text = model.tokenizer.decode(batch["input_ids"][1])
    assert "What is on the table?" in text and "<image>" not in text  # vision comes as the prefix instead
    g = torch.Generator().manual_seed(0)
    noise, t = torch.randn(batch["target"].shape, generator=g), torch.rand(2, generator=g)
    out = model(batch, noise=noise, time=t)
    assert {"loss/manipulation", "loss/vision_language", "loss/lm", "loss/flow"} <= set(out)
    alone = model(proc([act]), noise=noise[:1], time=t[:1])
    assert torch.allclose(out["loss/flow"], alone["loss/flow"], atol=1e-6)
    assert float(out["loss"].detach()) == pytest.approx(float(out["loss/flow"]) + float(out["loss/lm"]), rel=1e-5)


def test_cached_greedy_decode_equals_full_recompute_with_a_missing_camera():
    """The KV-cached decode keeps the prompt's mask (a missing camera stays unseen): its tokens equal a
    greedy decode that re-runs the whole sequence with the processor's masks at every step."""
    torch.manual_seed(0)
    cfg = discrete_config(vision="features", vision_dim=8, cameras=("primary", "wrist"))
    model = VLAModel(cfg).eval()
    rng = np.random.default_rng(1)
    s = samples(1)[0]
    s["vision"] = rng.normal(size=(2, 1, 8)).astype(np.float32)
    s["vision_mask"] = np.array([True, False])
    query = model.processor()([s], with_target=False)
    ids = model.action_tokens.ids
    n_tokens = int(own_dims(s["target_mask"]).size) * H
    produced, reference = [], []
    with torch.no_grad():
        for _ in range(n_tokens):
            input_ids = torch.cat([query["input_ids"], torch.tensor([produced], dtype=torch.long)], 1)
            hidden, _, _, _ = model.encode(query, input_ids, torch.ones_like(input_ids))
            reference.append(hidden[0, -1])
            logits = model.backbone.logits(hidden[0, -1]).float()
            produced.append(ids.first + int(torch.argmax(logits[ids.first: ids.first + ids.n])))
    expected = model.action_tokens.decode(produced, int(own_dims(s["target_mask"]).size), H)
    seen = []  # the hidden state each cached decoding step reads its logits from
    logits_of = model.backbone.logits
    model.backbone.logits = lambda h: (seen.append(h.reshape(-1).clone()), logits_of(h))[1]
    got = model.sample_actions(query)[0][:, torch.as_tensor(own_dims(s["target_mask"]))]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    assert len(seen) == n_tokens
    for step, (a, b) in enumerate(zip(seen, reference)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=f"decoding step {step}")
