"""The training feed and job on a real mixed corpus (Open-X sample manipulation + EgoDex egocentric + VLN frames
navigation, ingested, stats and tiny-SigLIP features computed in this process): chunks against the shard, masks,
normalization against stats.json, mixture counts, a short training run (loss, checkpoint layout, resume with
optimizer state and skipped data), predict in units, per-family losses in one batch, one-line errors."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from vlaflow.converters.ego.egodex_synth import write_egodex_episode
from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.pipelines.cli import app
from vlaflow.pipelines.features import FeatureReader, run_features
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.stats import run_stats
from vlaflow.pipelines.train import (PROGRESS, TRAIN_STATE, latest_checkpoint, predict_step, run_training,
                                     train_config_from_dict)
from vlaflow.pipelines.train_data import (FeedConfig, SampleNormalizer, block_to_samples, build_feed, load_stats,
                                          plan_schedule, shard_samples)
from vlaflow.schemas import ACTION, TRAJECTORY, Col, InputError, SpecError
from vlaflow.schemas.arrow import fixed_to_numpy, trajectory_to_numpy
from vlaflow.tokenization.normalization import Normalizer

H = 4
MODEL = {"dit_layers": 2, "dit_hidden": 64, "dit_heads": 2, "dit_head_dim": 16}


def _vln_module():
    spec = importlib.util.spec_from_file_location("vln_conf", Path(__file__).parents[1] / "converters/vln/conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Three families in one root, with stats.json and tiny-SigLIP features (all in this process)."""
    from vlaflow.models.tiny_encoders import save_tiny_siglip

    tmp = tmp_path_factory.mktemp("train")
    root = tmp / "corpus"
    src = write_sample_dataset(tmp / "src", episodes=4, steps=6, shards=2)
    run_ingest(IngestConfig("openx_rlds", str(src), str(root), executor="local"))
    for i in range(2):
        write_egodex_episode(tmp / "ego/part1/fold_towel", i, n_frames=12, width=64, height=48, seed=i)
    run_ingest(IngestConfig("egodex", str(tmp / "ego"), str(root), executor="local"))
    (tmp / "vln").mkdir()
    _vln_module().make_frames_folder(tmp / "vln", episodes=3)
    run_ingest(IngestConfig("vln_frames", str(tmp / "vln"), str(root), executor="local"))
    run_stats(str(root), executor="local")
    run_features(str(root), str(save_tiny_siglip(tmp / "sig")), executor="local")
    return tmp, root


def _shard_table(root: Path, dataset: str):
    rel = next(str(p.relative_to(root)) for p in sorted(root.glob(f"data/{dataset}/**/*.parquet")))
    return rel, FeatureReader(str(root), "sig").shard(rel)


def test_chunks_stay_inside_episodes_and_masks_are_slot_and_valid_and_inside(mixed):
    _, root = mixed
    stats = load_stats(str(root))
    norm = SampleNormalizer(stats, "quantile")
    invalid_seen = 0
    for dataset in ("bridge_dataset", "vln_frames_vln"):
        _, t = _shard_table(root, dataset)
        s = shard_samples(t, H, norm).columns
        act = fixed_to_numpy(t[Col.ACTION], ACTION.width, np.float32)
        amask = fixed_to_numpy(t[Col.ACTION_MASK], ACTION.width, bool)
        valid = t[Col.ACTION_VALID].to_numpy(zero_copy_only=False)
        eps = np.asarray(t[Col.EPISODE_ID].to_pylist())
        emb = t[Col.EMBODIMENT][0].as_py()
        ref = Normalizer(stats, "quantile", "action").normalize(act, dataset, emb)
        assert s["target"].shape == (t.num_rows, H, ACTION.width + TRAJECTORY.width)
        crossed = 0
        for i in range(t.num_rows):
            for k in range(H):
                j = i + k
                inside = j < t.num_rows and eps[j] == eps[i]
                m = s["target_mask"][i, k, :ACTION.width]
                if not inside:
                    crossed += 1
                    assert not m.any() and not s["target"][i, k].any()  # never a neighbour episode's step
                    continue
                np.testing.assert_array_equal(m, amask[j] & valid[j])
                np.testing.assert_allclose(s["target"][i, k, :ACTION.width][m], ref[j][m], rtol=1e-6, atol=1e-6)
            assert not s["target_mask"][i, :, ACTION.width:].any()  # robot rows: no trajectory target
        assert crossed > 0  # episode ends were exercised
        # a step whose action is undefined (action_valid false) is masked in every chunk that reaches it
        for i in np.flatnonzero(~valid):
            for k in range(min(H, i + 1)):
                if eps[i - k] == eps[i]:
                    assert not s["target_mask"][i - k, k, :ACTION.width].any()
                    invalid_seen += 1
    assert invalid_seen > 0


def test_ego_rows_are_supervised_on_their_trajectory_and_normalization_inverts_to_the_shard(mixed):
    _, root = mixed
    stats = load_stats(str(root))
    _, t = _shard_table(root, "egodex")
    s = shard_samples(t, H, SampleNormalizer(stats, "quantile")).columns
    traj, tmask = trajectory_to_numpy(t)
    np.testing.assert_array_equal(s["target_mask"][:, :, ACTION.width:], tmask[:, :H])
    assert s["target_mask"][:, :, ACTION.width:].any()
    emb = t[Col.EMBODIMENT][0].as_py()
    back = Normalizer(stats, "quantile", TRAJECTORY).denormalize(s["target"][:, :, ACTION.width:], "egodex", emb)
    g = stats["groups"][f"egodex/{emb}"]["trajectory"]
    lo, hi = np.zeros(TRAJECTORY.width), np.zeros(TRAJECTORY.width)
    for slot, st in g.items():
        a = st["start"]
        lo[a:a + st["width"]] = [x if x is not None else -np.inf for x in st["q01"]]
        hi[a:a + st["width"]] = [x if x is not None else np.inf for x in st["q99"]]
    m = tmask[:, :H] & (traj[:, :H] >= lo) & (traj[:, :H] <= hi)  # inside [q01, q99]: exactly invertible
    assert m.sum() > 100
    np.testing.assert_allclose(back[m], traj[:, :H][m], rtol=1e-4, atol=1e-5)
    # the map is the one stats.json defines: (x - (q01 + q99) / 2) / ((q99 - q01) / 2)
    st = g["right_hand.wrist_pos"]
    i = np.flatnonzero(tmask[:, 0, st["start"]])[0]
    x = traj[i, 0, st["start"]]
    want = np.clip((x - (st["q01"][0] + st["q99"][0]) / 2) / ((st["q99"][0] - st["q01"][0]) / 2), -1, 1)
    assert s["target"][i, 0, ACTION.width + st["start"]] == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_mixture_counts_follow_the_preset_and_the_schedule_is_seeded_per_epoch(mixed):
    from vlaflow.pipelines.corpus import Corpus

    _, root = mixed
    c = Corpus.open(str(root))
    cfg = FeedConfig(corpus=str(root), mixture="unified", epochs=3, samples_per_epoch=30000, seed=7)
    sch = plan_schedule(c, cfg)
    p = c.mixture("unified")
    assert p == pytest.approx({"bridge_dataset": 0.6 / 0.95, "vln_frames_vln": 0.25 / 0.95, "egodex": 0.1 / 0.95})
    for e in range(3):
        counts = sch.counts(e)
        assert sum(counts.values()) == 30000
        for name, prob in p.items():  # multinomial: within 5 standard deviations
            sd = (30000 * prob * (1 - prob)) ** 0.5
            assert abs(counts[name] - 30000 * prob) < 5 * sd
    assert sch.counts(0) != sch.counts(1)  # a fresh draw per epoch
    again = plan_schedule(c, cfg)
    assert [(i.shard, i.count, i.seed) for i in again.items] == [(i.shard, i.count, i.seed) for i in sch.items]
    # a read task emits exactly its count, positions contiguous from its place in the schedule
    _, feed, small = build_feed(FeedConfig(corpus=str(root), epochs=1, seed=3, cameras=["primary", "wrist"]))
    for it in small.items[:3]:
        b = feed.read_item(it)
        assert len(b["dataset"]) == it.count and set(b["dataset"]) == {it.dataset}
        assert list(b["position"]) == list(range(it.position, it.position + it.count))
        assert b["vision"].shape == (it.count, 2, 1, 32)
    trimmed = small.starting_at(small.items[1].position + 2)
    assert trimmed[0].skip == 2 and len(trimmed) == len(small.items) - 1


def test_one_batch_mixes_families_with_a_loss_per_family(mixed):
    from vlaflow.models.vla import VLAConfig, VLAModel

    _, root = mixed
    _, feed, sch = build_feed(FeedConfig(corpus=str(root), horizon=H, cameras=["primary"]))
    samples = []
    for name in ("bridge_dataset", "egodex", "vln_frames_vln"):
        it = next(i for i in sch.items if i.dataset == name)
        samples += block_to_samples(feed.read_item(it))[:2]
    torch.manual_seed(0)
    cfg = VLAConfig(horizon=H, vision_dim=32, embodiments=sorted({s["embodiment"] for s in samples}), **MODEL)
    model = VLAModel(cfg)
    out = model(model.processor()(samples))
    assert torch.isfinite(out["loss"])
    assert {"loss/manipulation", "loss/egocentric", "loss/navigation"} <= set(out)


def _train_cfg(root, out, **kw):
    doc = {"output": str(out), "name": "run", "num_workers": 0, "batch_size": 4, "checkpoint_every": 10,
           "log_every": 10, "lr": 2e-3, "model": MODEL,
           "data": {"corpus": str(root), "horizon": H, "cameras": ["primary"], "epochs": 4}}
    for k, v in kw.items():
        if k == "data":
            doc["data"].update(v)
        else:
            doc[k] = v
    return train_config_from_dict(doc)


@pytest.fixture(scope="module")
def trained(mixed, ray_local):
    """20 steps in this process (Ray Train local mode), then a relaunch of the same run to step 30."""
    tmp, root = mixed
    first = run_training(_train_cfg(root, tmp / "runs", steps=20))
    second = run_training(_train_cfg(root, tmp / "runs", steps=30))
    return tmp, root, first, second


def test_training_writes_the_checkpoint_layout_and_the_loss_falls(trained):
    tmp, root, first, _ = trained
    m = first.metrics
    assert m["step"] == 20 and m["samples_consumed"] == 80 and np.isfinite(m["loss"])
    assert m["loss"] < m["first_loss"]
    assert 0 <= m["data_wait_fraction"] <= 1 and m["compute_s"] > 0
    ck = Path(tmp / "runs/run/checkpoint_00000020")
    for name in ("config.json", "model.safetensors", "tokenizer", "stats.json", "embodiments.json", TRAIN_STATE):
        assert (ck / name).exists(), name
    assert json.loads((ck / "stats.json").read_text()) == json.loads((root / "meta/stats.json").read_text())
    specs = json.loads((ck / "embodiments.json").read_text())
    assert set(specs) == set(json.loads((ck / "config.json").read_text())["embodiments"])
    state = torch.load(ck / TRAIN_STATE, weights_only=True)
    assert state["step"] == 20 and state["samples_consumed"] == 80 and state["optimizer"]["state"]


def test_relaunch_resumes_step_optimizer_and_data_position(trained):
    tmp, _, first, second = trained
    assert second.resumed_from == 20 and second.start_position == 80
    m = second.metrics
    assert m["step"] == 30 and m["samples_consumed"] == 120
    assert m["run_first_position"] == 80  # the first sample after the relaunch is the first one not consumed
    ck = latest_checkpoint(str(tmp / "runs/run"))
    assert ck.endswith("checkpoint_00000030")
    state = torch.load(Path(ck) / TRAIN_STATE, weights_only=True)
    adam_steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {30.0}  # the optimizer's own step counters continued from the checkpoint's 20
    assert json.loads((Path(ck) / PROGRESS).read_text())["samples_consumed"] == 120
    # a relaunch of a finished run trains nothing and points at its checkpoint
    again = run_training(_train_cfg(tmp / "corpus", tmp / "runs", steps=30))
    assert again.already_done and again.checkpoint == ck and again.metrics["step"] == 30
    # a relaunch under another data config would mean other positions: refused
    with pytest.raises(InputError, match="another data config"):
        run_training(_train_cfg(tmp / "corpus", tmp / "runs", steps=40, data={"seed": 5}))


def test_predict_returns_the_embodiments_slots_in_units(trained):
    tmp, root, *_ = trained
    eps = pq.read_table(root / "meta/episodes.parquet").to_pylist()
    bridge = next(e["episode_id"] for e in eps if e["dataset"] == "bridge_dataset")
    res = predict_step(str(tmp / "runs/run"), bridge, step=1)
    assert set(res["predicted"]) == {"arm.eef_pos_delta", "arm.eef_rot_delta", "arm.gripper"}
    for slot, rows in res["predicted"].items():
        assert np.asarray(rows).shape == (H, ACTION.slot(slot).width) and np.isfinite(rows).all()
    t = pq.read_table(next(root.glob("data/bridge_dataset/**/*.parquet")))
    t = t.filter(np.asarray(t["episode_id"].to_pylist()) == bridge)
    act = fixed_to_numpy(t[Col.ACTION], ACTION.width, np.float32)
    a, b = ACTION.range("arm.eef_pos_delta")
    np.testing.assert_allclose(res["recorded"]["arm.eef_pos_delta"][0], act[1, a:b], rtol=1e-6)
    assert res["units"]["arm.eef_pos_delta"] == "m" and np.isfinite(res["mean_abs_error"])
    ego = next(e["episode_id"] for e in eps if e["dataset"] == "egodex")
    r = predict_step(str(tmp / "runs/run"), ego, step=0)
    assert any(k.startswith("trajectory/") for k in r["predicted"])
    r = CliRunner().invoke(app, ["predict", str(tmp / "runs/run"), "--episode", bridge, "--step", "99"])
    assert r.exit_code == 2 and "outside" in r.output and "Traceback" not in r.output


def test_predict_refuses_an_embodiment_the_checkpoint_never_saw(trained, tmp_path):
    tmp, root, *_ = trained
    (tmp_path / "bridge_only.yaml").write_text(f"roots:\n  - path: {root}\n    datasets: [bridge_dataset]\n")
    (tmp_path / "bridge_only.stats.json").write_text((root / "meta/stats.json").read_text())
    res = run_training(_train_cfg(str(tmp_path / "bridge_only.yaml"), tmp_path / "runs", steps=2, checkpoint_every=2,
                                  data={"vision": "none"}))
    assert res.checkpoint
    ego = next(e["episode_id"] for e in pq.read_table(root / "meta/episodes.parquet").to_pylist()
               if e["dataset"] == "egodex")
    r = CliRunner().invoke(app, ["predict", res.checkpoint, "--episode", ego, "--corpus", str(root)])
    assert r.exit_code == 2 and "not seen by this checkpoint" in r.output and "Traceback" not in r.output


def test_missing_stats_features_and_config_typos_are_one_line_errors(mixed, tmp_path):
    _, root = mixed
    bare = tmp_path / "bare"
    src = write_sample_dataset(tmp_path / "src", episodes=2, steps=4, shards=1)
    run_ingest(IngestConfig("openx_rlds", str(src), str(bare), executor="local"))
    with pytest.raises(InputError, match="run `vlaflow stats"):
        build_feed(FeedConfig(corpus=str(bare), vision="none"))
    run_stats(str(bare), executor="local")
    with pytest.raises(InputError, match="run `vlaflow features"):
        build_feed(FeedConfig(corpus=str(bare)))
    with pytest.raises(InputError, match="tokens"):
        build_feed(FeedConfig(corpus=str(root), vision_tokens=4))
    with pytest.raises(SpecError, match=r"train\.batchsize: unknown key \(did you mean 'batch_size'\?\)"):
        train_config_from_dict({"batchsize": 4})
    with pytest.raises(SpecError, match=r"train\.data\.horizn: unknown key"):
        train_config_from_dict({"data": {"horizn": 4}})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"train:\n  data: {{corpus: {bare}, vision: none}}\n  model: {{dit_layerz: 2}}\n")
    r = CliRunner().invoke(app, ["train", str(tmp_path / "o"), "--config", str(cfg)])
    assert r.exit_code == 2 and "dit_layerz: unknown key" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["train", str(tmp_path / "o"), "--config", str(cfg), "stepz"])
    assert r.exit_code == 2 and "KEY=VALUE" in r.output


def test_shuffled_batches_mix_families_and_report_a_loss_per_family(mixed, ray_local):
    tmp, root = mixed
    res = run_training(_train_cfg(root, tmp / "mix", name="mix", steps=6, log_every=6, checkpoint_every=6,
                                  batch_size=8, shuffle_buffer=200))
    assert {"loss/manipulation", "loss/egocentric", "loss/navigation"} <= set(res.metrics)
    assert all(np.isfinite(v) for k, v in res.metrics.items() if k.startswith("loss"))


def test_trains_from_raw_frames_without_features(mixed, ray_local):
    """vision: encoder — image bytes in the samples, the frozen encoder inside the model."""
    tmp, root = mixed
    _, feed, sch = build_feed(FeedConfig(corpus=str(root), vision="encoder", cameras=["wrist", "primary"]))
    it = next(i for i in sch.items if i.dataset == "bridge_dataset")
    s = block_to_samples(feed.read_item(it))[0]
    assert len(s["images"]) == 2 and all(isinstance(b, bytes) and b[:2] == b"\xff\xd8" for b in s["images"])
    cols = [k for k in feed.read_item(it) if k.startswith("image.")]
    assert cols == ["image.00.wrist", "image.01.primary"]  # camera order kept
    res = run_training(_train_cfg(root, tmp / "raw", name="raw", steps=3, checkpoint_every=3,
                                  data={"vision": "encoder"}, model={**MODEL, "vision_encoder": str(tmp / "sig")}))
    assert res.metrics["step"] == 3 and np.isfinite(res.metrics["loss"])
    cfg = json.loads((Path(res.checkpoint) / "config.json").read_text())
    assert cfg["vision"] == "encoder"


@pytest.fixture(scope="module")
def mp4_root(mixed):
    """The same EgoDex episodes stored as MP4 (``storage=mp4``): frames are video references."""
    from vlaflow.converters.base import ConverterOptions

    tmp, _ = mixed
    root = tmp / "ego_mp4"
    run_ingest(IngestConfig("egodex", str(tmp / "ego"), str(root), ConverterOptions(extra={"storage": "mp4"}),
                            executor="local"))
    run_stats(str(root), executor="local")
    return root


@pytest.mark.parametrize("which", ["mixed", "mp4"])
def test_read_tasks_preprocess_frames_exactly_as_the_collate_would(mixed, mp4_root, which):
    """With the encoder named, a read task emits the encoder's pixel_values (JPEG bytes and MP4 frames alike), in
    slices under the byte budget, equal to decoding the same samples' image bytes in the collate."""
    import dataclasses

    from vlaflow.models.vla import VLAConfig
    from vlaflow.models.vla.vision import decode_frames

    tmp, root = mixed
    root = root if which == "mixed" else mp4_root
    cams = ["wrist", "primary"]
    _, feed, sch = build_feed(FeedConfig(corpus=str(root), vision="encoder", cameras=cams, horizon=H))
    pre = dataclasses.replace(feed, image_processor=str(tmp / "sig"))
    cfg = VLAConfig(vision="encoder", vision_encoder=str(tmp / "sig"), vision_dim=32, cameras=tuple(cams), horizon=H)
    seen = set()
    for item in sch.items:
        if item.dataset in seen:
            continue
        seen.add(item.dataset)
        ref = feed.read_item(item)
        slices = list(pre.blocks(item, max_bytes=3 * 2 * 3 * 32 * 32))  # three rows' uint8 pixels per slice
        sizes = [len(b["position"]) for b in slices]  # the first slice (8 rows) measures a row's bytes
        n = len(ref["position"])
        assert sum(sizes) == n and sizes[0] == min(8, n) and all(x <= 3 for x in sizes[1:])
        assert len(sizes) > 3 or which == "mp4"  # the mp4 root's items are a few rows each
        assert not any(k.startswith("image.") for b in slices for k in b)
        got = {k: np.concatenate([b[k] for b in slices]) for k in slices[0]}
        np.testing.assert_array_equal(got["position"], ref["position"])
        np.testing.assert_array_equal(got["target"], ref["target"])
        want_pv, want_mask = decode_frames(cfg, block_to_samples(ref))
        np.testing.assert_array_equal(got["pixel_values"], want_pv.numpy())
        np.testing.assert_array_equal(got["vision_mask"], want_mask.numpy())
        assert got["vision_mask"][:, 1].all()  # every dataset here has a primary camera
        stacked, mask = decode_frames(cfg, block_to_samples(got))  # the collate only stacks them now
        assert torch.equal(stacked, want_pv) and torch.equal(mask, want_mask)
    if which == "mixed":
        assert {"bridge_dataset", "egodex"} <= seen
    else:
        item = sch.items[0]
        assert any(isinstance(v, dict) for v in pre._picked(item)["image.01.primary"])  # references, decoded in the task


def test_predict_refuses_features_of_another_encoder(trained, tmp_path):
    """The same corpus with its features recomputed by another encoder under the same key: refused in one line."""
    import shutil

    from vlaflow.models.tiny_encoders import save_tiny_siglip

    tmp, root, *_ = trained
    other = tmp_path / "other"
    shutil.copytree(root, other)
    shutil.rmtree(other / "features/sig")
    run_features(str(other), str(save_tiny_siglip(tmp_path / "enc2", seed=1)), key="sig", executor="local")
    bridge = next(e["episode_id"] for e in pq.read_table(root / "meta/episodes.parquet").to_pylist()
                  if e["dataset"] == "bridge_dataset")
    with pytest.raises(InputError, match=r"another encoder.*run `vlaflow features"):
        predict_step(str(tmp / "runs/run"), bridge, corpus=str(other))
