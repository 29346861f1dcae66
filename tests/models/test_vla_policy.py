"""``load_policy`` + ``Policy.predict``: the embodiment's own slots only, de-normalized into its units with
the checkpoint's stats.json (checked against the Normalizer's inverse, and end to end on an overfit model)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vlaflow.models.vla import PolicyError, VLAConfig, VLAModel, load_policy
from vlaflow.models.vla import synthetic as syn
from vlaflow.schemas import ACTION, STATE, TRAJECTORY, get_embodiment
from vlaflow.tokenization.normalization import Normalizer

H, VD = 4, 8
EMBODIMENTS = ("widowx_250", "human_hands")


def write_checkpoint(folder, model: VLAModel, stats: dict, embodiments=EMBODIMENTS) -> None:
    """What the train job writes: the model, the exact stats and the embodiment specs."""
    model.save_pretrained(folder)
    (folder / "stats.json").write_text(json.dumps(stats))
    (folder / "embodiments.json").write_text(json.dumps({e: get_embodiment(e).to_dict() for e in embodiments}))


@pytest.fixture(scope="module")
def flow_policy(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = {("synth", e): syn.raw_rows(get_embodiment(e), 6, H, rng) for e in EMBODIMENTS}
    stats = syn.stats_for(rows)
    torch.manual_seed(0)
    cfg = VLAConfig(embodiments=EMBODIMENTS, vision_dim=VD, horizon=H, dit_layers=2, dit_heads=2, dit_head_dim=16,
                    dit_hidden=32)
    model = VLAModel(cfg).eval()
    folder = tmp_path_factory.mktemp("policy")
    write_checkpoint(folder, model, stats)
    return load_policy(folder), model, rows, stats


def test_predict_returns_only_own_slots(flow_policy):
    policy, _, rows, _ = flow_policy
    wx = get_embodiment("widowx_250")
    out = policy.predict({"state": rows["synth", "widowx_250"]["state"][0]}, "pick up the cup", "widowx_250")
    assert set(out) == set(wx.action_slots)
    for slot, v in out.items():
        assert v.shape == (H, ACTION.slot(slot).width) and v.dtype == np.float32
    hands = policy.predict({}, "", "human_hands")
    traj = {k for k in hands if k.startswith("trajectory/")}
    assert set(hands) - traj == set(get_embodiment("human_hands").action_slots)
    assert traj == {"trajectory/" + s for s in syn.trajectory_slots(get_embodiment("human_hands"))}
    assert hands["trajectory/left_hand.fingertips_uv"].shape == (H, TRAJECTORY.slot("left_hand.fingertips_uv").width)


@pytest.mark.parametrize("embodiment", EMBODIMENTS)
def test_predict_is_the_normalizer_inverse_of_the_sampled_chunk(flow_policy, embodiment):
    """Normalize the observation, sample, de-normalize — by hand with the Normalizer — equals predict."""
    policy, model, rows, stats = flow_policy
    e = get_embodiment(embodiment)
    raw_state = rows["synth", embodiment]["state"][1]
    state_by_slot = {s: raw_state[slice(*STATE.range(s))] for s in e.state_slots}
    got = policy.predict({"state": state_by_slot}, "open the drawer", embodiment, seed=7)

    ns = Normalizer(stats, "quantile", layout=STATE)
    smask = STATE.mask_for(list(e.state_slots))
    tmask = np.concatenate([ACTION.mask_for(list(e.action_slots)),
                            TRAJECTORY.mask_for(syn.trajectory_slots(e))])
    sample = {"dataset": "synth", "embodiment": embodiment, "task_family": syn.family_of(e),
              "instruction": "open the drawer", "embodiment_prompt": e.prompt(),
              "state": np.where(smask, ns.normalize(raw_state, "synth", embodiment), 0).astype(np.float32),
              "state_mask": smask, "target": np.zeros((H, tmask.size), np.float32),
              "target_mask": np.broadcast_to(tmask, (H, tmask.size)).copy(),
              "vision": np.zeros((1, 1, VD), np.float32), "vision_mask": np.zeros(1, bool)}
    chunk = model.sample_actions(model.processor()([sample], with_target=False),
                                 generator=torch.Generator().manual_seed(7))[0].numpy()
    act = Normalizer(stats, "quantile", layout=ACTION).denormalize(chunk[:, :ACTION.width].astype(np.float64),
                                                                  "synth", embodiment)
    traj = Normalizer(stats, "quantile", layout=TRAJECTORY).denormalize(
        chunk[:, ACTION.width:].astype(np.float64), "synth", embodiment)
    for slot in e.action_slots:
        np.testing.assert_allclose(got[slot], act[:, slice(*ACTION.range(slot))], rtol=1e-5, atol=1e-6)
    for slot in syn.trajectory_slots(e):
        np.testing.assert_allclose(got["trajectory/" + slot], traj[:, slice(*TRAJECTORY.range(slot))],
                                   rtol=1e-5, atol=1e-6)
    # the padded-vector form of the same state gives the same prediction
    again = policy.predict({"state": raw_state}, "open the drawer", embodiment, seed=7)
    for slot in got:
        np.testing.assert_array_equal(got[slot], again[slot])


def test_features_per_camera_and_clear_errors(flow_policy, tmp_path):
    policy, _, rows, stats = flow_policy
    feats = {"primary": np.ones(VD, np.float32)}
    a = policy.predict({"vision": feats}, "pick", "widowx_250", seed=0)
    b = policy.predict({}, "pick", "widowx_250", seed=0)
    assert any(not np.array_equal(a[k], b[k]) for k in a)  # the camera is seen
    with pytest.raises(PolicyError, match="'franka_panda' was not seen by this checkpoint; known: widowx_250"):
        policy.predict({}, "pick", "franka_panda")
    with pytest.raises(PolicyError, match="state slot 'base.pose' is not one of 'widowx_250'"):
        policy.predict({"state": {"base.pose": [0, 0, 0]}}, "pick", "widowx_250")
    with pytest.raises(PolicyError, match="tokens"):
        policy.predict({"vision": {"primary": np.ones((3, VD))}}, "pick", "widowx_250")
    folder = tmp_path / "ckpt"
    policy.model.save_pretrained(folder)
    with pytest.raises(PolicyError, match="no stats.json .*vlaflow stats"):
        load_policy(folder)
    with pytest.raises(PolicyError, match="not a checkpoint folder"):
        load_policy(tmp_path / "nothing")


def test_overfit_discrete_policy_predicts_in_units(tmp_path):
    """End to end in units: raw chunk → stats → normalized target → train (discrete bins) → checkpoint →
    predict from the raw state → the raw chunk back, within half a bin of each value's scale."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(3)
        e = get_embodiment("widowx_250")
        rows = syn.raw_rows(e, 8, 2, rng)
        stats = syn.stats_for({("synth", e.id): rows})
        cfg = VLAConfig(head="discrete", vision="none", horizon=2, discrete_bins=64, embodiments=(e.id,))
        torch.manual_seed(0)
        model = VLAModel(cfg)
        sample = syn.to_samples(rows, e, "synth", stats)[0]
        batch = model.processor()([sample])
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(60):
            loss = model(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        write_checkpoint(tmp_path, model, stats, (e.id,))
        out = load_policy(tmp_path).predict({"state": rows["state"][0]}, sample["instruction"], e.id)
    finally:
        torch.set_num_threads(threads)
    na = Normalizer(stats, "quantile", layout=ACTION)
    expected = na.denormalize(na.normalize(rows["action"][0], "synth", e.id), "synth", e.id)  # quantile clip
    aff = na.affine("synth", e.id)
    for slot in e.action_slots:
        sl = slice(*ACTION.range(slot))
        tol = aff.scale[sl] / 64 + 1e-5  # half a bin of [-1, 1] in 64 bins, in units
        assert (np.abs(out[slot] - expected[:, sl]) <= tol).all(), slot
