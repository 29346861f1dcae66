"""Vision-language rows in the training feed and job: a corpus of robot + LLaVA rows, batches that mix them, VL
rows supervised by the language loss only, and a short reference training run on the mixture."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.pipelines.features import run_features
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.stats import run_stats
from vlaflow.pipelines.train import run_training, train_config_from_dict
from vlaflow.pipelines.train_data import FeedConfig, block_to_samples, build_feed
from vlaflow.tokenization.prompts import IGNORE

H = 4
MODEL = {"dit_layers": 2, "dit_hidden": 64, "dit_heads": 2, "dit_head_dim": 16}


def _vl_conftest():
    spec = importlib.util.spec_from_file_location("vl_conf", Path(__file__).parents[1] / "converters/vl/conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def robot_and_vl(tmp_path_factory):
    from vlaflow.models.tiny_encoders import save_tiny_siglip

    tmp = tmp_path_factory.mktemp("train_vl")
    root = tmp / "corpus"
    src = write_sample_dataset(tmp / "src", episodes=4, steps=6, shards=1)
    run_ingest(IngestConfig("openx_rlds", str(src), str(root), executor="local"))
    path, _ = _vl_conftest().write_llava(tmp / "llava")
    run_ingest(IngestConfig("llava", str(path), str(root), executor="local"))
    run_stats(str(root), executor="local")
    run_features(str(root), str(save_tiny_siglip(tmp / "sig")), executor="local")
    return tmp, root


def test_vl_rows_reach_the_batch_with_their_conversation_and_only_a_language_loss(robot_and_vl):
    from vlaflow.models.vla import VLAConfig, VLAModel

    _, root = robot_and_vl
    _, feed, sch = build_feed(FeedConfig(corpus=str(root), horizon=H, cameras=["primary", "secondary"],
                                         mixture="unified"))
    assert set(sch.probabilities) == {"bridge_dataset", "llava"}
    assert sch.probabilities["llava"] == pytest.approx(0.1 / 0.7)
    vl = block_to_samples(feed.read_item(next(i for i in sch.items if i.dataset == "llava")))
    robot = block_to_samples(feed.read_item(next(i for i in sch.items if i.dataset == "bridge_dataset")))
    assert vl and all(s["task_family"] == "vision_language" and s["conversation"] for s in vl)
    assert all(not s["target_mask"].any() and not s["state_mask"].any() for s in vl)
    assert all("conversation" not in s for s in robot)
    multi = next((s for s in vl if sum(t["text"].count("<image>") for t in s["conversation"]) == 2), None)
    if multi is not None:  # both images of a two-image sample reach the model as cameras
        assert multi["vision_mask"].tolist() == [True, True]
    torch.manual_seed(0)
    samples = robot[:2] + vl[:2]
    cfg = VLAConfig(horizon=H, vision_dim=32, cameras=("primary", "secondary"),
                    embodiments=sorted({s["embodiment"] for s in samples}), **MODEL)
    model = VLAModel(cfg)
    proc = model.processor()
    batch = proc(samples)
    labelled = (batch["labels"] != IGNORE).any(1).tolist()
    assert labelled == [False, False, True, True]  # labels only on the VL rows (continuous head)
    out = model(batch)
    assert torch.isfinite(out["loss"]) and {"loss/manipulation", "loss/vision_language"} <= set(out)
    only_vl = model(proc(vl[:2]))
    assert "loss/manipulation" not in only_vl and float(only_vl["loss/vision_language"]) > 0
    # a VL row's action / state / vision of the action head get nothing: its target mask is all False
    assert float(batch["target_mask"][2:].sum()) == 0


def test_a_mixed_corpus_trains_in_the_reference_job(robot_and_vl, ray_local):
    tmp, root = robot_and_vl
    cfg = train_config_from_dict({
        "output": str(tmp / "runs"), "name": "vl", "num_workers": 0, "batch_size": 4, "steps": 14,
        "checkpoint_every": 14, "log_every": 14, "lr": 2e-3, "model": MODEL,
        "data": {"corpus": str(root), "horizon": H, "cameras": ["primary"], "mixture": "unified", "epochs": 8}})
    m = run_training(cfg).metrics
    assert m["step"] == 14 and np.isfinite(m["loss"])
    # one window of 56 samples in the seeded schedule's order (LLaVA rows at positions 47-52): both families
    # trained, each with its own loss
    assert np.isfinite(m["loss/vision_language"]) and np.isfinite(m["loss/manipulation"])


def test_the_feed_yields_the_schedule_in_order_even_when_an_early_read_is_slow(robot_and_vl, ray_local):
    """Resume skips by position, so order is the contract. Train's local mode (num_workers=0) ignores DataConfig:
    the dataset itself must keep the order, or a slow first read lets later blocks overtake it."""
    import time

    from vlaflow.pipelines.train_data import ray_dataset

    _, root = robot_and_vl
    _, feed, sch = build_feed(FeedConfig(corpus=str(root), horizon=H, cameras=["primary"], mixture="unified", epochs=2))

    class SlowFirst:  # defined here, so Ray ships it by value
        def __init__(self, inner):
            self.inner = inner

        def blocks(self, item):
            if item.position == 0:
                time.sleep(1.5)
            yield from self.inner.blocks(item)

    positions = np.concatenate([b["position"] for b in ray_dataset(SlowFirst(feed), sch.items).iter_batches(
        batch_size=None, batch_format="numpy")])
    assert positions.tolist() == list(range(sum(i.count for i in sch.items)))
