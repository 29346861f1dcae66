"""`vlaflow features` end to end on the sample RLDS data (image bytes and --opt storage=mp4), tiny encoders saved
with save_pretrained and loaded through the real from_pretrained path; resume, refusals, bad frames, Ray pool."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from vlaflow.converters import ConverterOptions
from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.media import FrameReader
from vlaflow.pipelines.features import FeatureReader, run_features
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.schemas import InputError

_enc = importlib.util.spec_from_file_location("enc_helpers", Path(__file__).parents[1] / "models/test_vision_encoders.py")
helpers = importlib.util.module_from_spec(_enc)
_enc.loader.exec_module(helpers)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"sig": str(helpers.save_tiny_siglip(d / "sig")), "dino": str(helpers.save_tiny_dinov2(d / "dino"))}


def _ingest(tmp: Path, name: str, **opts) -> Path:
    src = tmp / "src"
    if not src.exists():
        write_sample_dataset(src, episodes=3, steps=4, shards=1)
    out = tmp / name
    run_ingest(IngestConfig("openx_rlds", str(src / "bridge_dataset/1.0.0"), str(out),
                            ConverterOptions(extra=opts), executor="local"))
    return out


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("features")
    return {"images": _ingest(tmp, "images"), "mp4": _ingest(tmp, "mp4", storage="mp4")}


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _direct(model_dir: str, rgb: np.ndarray) -> np.ndarray:
    from transformers import AutoImageProcessor, SiglipVisionModel

    model = SiglipVisionModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return model(**AutoImageProcessor.from_pretrained(model_dir)(images=[rgb], return_tensors="pt")).pooler_output[0].numpy()


def _direct_qwen(model_dir: str, rgb: np.ndarray) -> np.ndarray:
    """The mean of what the whole Qwen2.5-VL model's get_image_features gives the LLM for this frame."""
    from transformers import AutoImageProcessor, AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    batch = AutoImageProcessor.from_pretrained(model_dir)(images=[rgb], return_tensors="pt")
    with torch.no_grad():
        feats = model.get_image_features(batch["pixel_values"], image_grid_thw=batch["image_grid_thw"]).pooler_output
    return feats[0].mean(0).numpy()


def _check_against_source(out: Path, model_dir: str, key: str, seed: int, direct=_direct) -> None:
    """One feature per (step, camera) present, and three random rows equal a direct forward on the same frame."""
    fr = FeatureReader(str(out), key)
    reader = FrameReader(str(out))
    rng = np.random.default_rng(seed)
    checked = 0
    for ent in fr.manifest["shards"]:
        steps = pq.read_table(out / ent["source"], columns=["episode_id", "step_index", "images", "videos"])
        t = fr.shard(ent["source"], columns=["episode_id", "step_index"])
        assert t.num_rows == steps.num_rows == ent["rows"] and ent["roles"]
        for role in ent["roles"]:
            imgs = steps["images"].combine_chunks().field(role).to_pylist()
            vids = steps["videos"].combine_chunks().field(role).to_pylist()
            present = np.array([bool((i and i["bytes"]) or (v and v["path"])) for i, v in zip(imgs, vids)])
            feats, mask = fr.arrays(t, role)
            assert (mask == present).all() and present.any()
            assert t["features." + role].null_count == (~present).sum()
            if checked:
                continue
            for i in rng.choice(np.flatnonzero(present), 3, replace=False):  # three random rows
                rgb = reader.frame(imgs[i], vids[i])
                np.testing.assert_allclose(feats[i], direct(model_dir, rgb), rtol=2e-3, atol=2e-3)
                checked += 1
    assert checked >= 3


def test_features_on_images_resume_and_refusal(corpora, models):
    out = corpora["images"]
    res = run_features(str(out), models["sig"], batch_size=5, executor="local")
    led = res.ledger
    assert led["balanced"] and led["failed"] == 0 and led["frames_in"] == 3 * 4 * 2 * 4  # eps*steps*splits*cams
    assert led["encoded"] + led["deduplicated"] == led["frames_in"] and led["deduplicated"] > 0
    _check_against_source(out, models["sig"], "sig", 0)
    m = json.loads((out / "features/sig/manifest.json").read_text())
    manifest_sha = hashlib.sha256((out / "meta/manifest.json").read_bytes()).hexdigest()
    assert m["source_manifest_sha256"] == manifest_sha and m["dim"] == 32 and m["dtype"] == "float16"
    assert m["pooling"] == "pooler_output" and m["revision"] == "local" and "model.safetensors" in m["weights_sha256"]
    assert m["processor"]["size"] == {"height": 32, "width": 32} and m["tokens"] == 0
    for s in m["shards"]:
        assert s["sha256"] == hashlib.sha256((out / s["path"]).read_bytes()).hexdigest()
        assert s["path"] == "features/sig/" + s["source"]
        assert pq.ParquetFile(out / s["path"]).num_row_groups == pq.ParquetFile(out / s["source"]).num_row_groups
    before = _tree(out / "features")
    again = run_features(str(out), models["sig"], batch_size=5, executor="local")
    assert again.shards_skipped == again.shards_total == len(m["shards"])
    assert _tree(out / "features") == before
    # an interrupted run resumes to the same bytes: drop one shard's marker and features
    (out / m["shards"][0]["path"]).unlink()
    (out / "features/sig/manifest.json").unlink()
    resumed = run_features(str(out), models["sig"], batch_size=5, executor="local")
    assert resumed.shards_skipped == len(m["shards"]) - 1 and _tree(out / "features") == before
    # another encoder or other settings never mix into the folder
    with pytest.raises(InputError, match="another encoder"):
        run_features(str(out), models["dino"], key="sig", executor="local")
    with pytest.raises(InputError, match="another encoder"):
        run_features(str(out), models["sig"], tokens=4, executor="local")
    assert _tree(out / "features") == before
    # features for one version of the corpus: a changed manifest is refused
    raw = (out / "meta/manifest.json").read_bytes()
    (out / "meta/manifest.json").write_bytes(raw.replace(b"\n}", b', "note": 1\n}', 1) if raw.endswith(b"\n}\n") else raw + b" ")
    try:
        with pytest.raises(InputError, match="another version of this corpus"):
            run_features(str(out), models["sig"], executor="local")
    finally:
        (out / "meta/manifest.json").write_bytes(raw)


def test_tokens_and_a_second_encoder_on_mp4_storage(corpora, models):
    out = corpora["mp4"]
    assert list(out.glob("videos/**/*.mp4"))
    res = run_features(str(out), models["sig"], tokens=4, dtype="bfloat16", executor="local")
    assert res.ledger["balanced"] and res.ledger["failed"] == 0
    _check_against_source(out, models["sig"], "sig", 1)
    fr = FeatureReader(str(out), "sig")
    ep = fr.corpus.episodes()["episode_id"][0].as_py()
    t = fr.episode(ep, columns=["action"])
    toks, mask = fr.arrays(t, "primary", tokens=True)
    assert t.num_rows == 4 and toks.shape == (4, 4, 32) and mask.all() and np.abs(toks).sum() > 0
    dino = run_features(str(out), models["dino"], executor="local")
    assert dino.manifest["key"] == "dino" and dino.manifest["dim"] == 24 and dino.ledger["balanced"]
    assert FeatureReader(str(out), "dino").arrays(fr.shard(dino.manifest["shards"][0]["source"]), "primary")[1].all()


def test_qwen2_5_vl_vision_tower_on_mp4_storage(corpora, tmp_path):
    """The Qwen2.5-VL option end to end: only its vision tower runs, features equal get_image_features' mean."""
    qwen = str(helpers.save_tiny_qwen_vl(tmp_path / "qwen25"))
    out = corpora["mp4"]
    res = run_features(str(out), qwen, tokens=4, executor="local")
    m = res.manifest
    assert res.ledger["balanced"] and res.ledger["failed"] == 0 and m["key"] == "qwen25"
    assert (m["dim"], m["pooling"], m["encoder"]["model_class"]) == (40, "mean_merged_tokens",
                                                                      "Qwen2_5_VisionTransformerPretrainedModel")
    assert m["processor"]["merge_size"] == 2 and set(m["weights_sha256"]) == {"model.safetensors"}
    _check_against_source(out, qwen, "qwen25", 2, _direct_qwen)
    fr = FeatureReader(str(out), "qwen25")
    toks, mask = fr.arrays(fr.shard(m["shards"][0]["source"], columns=["step_index"]), "wrist", tokens=True)
    assert toks.shape[1:] == (4, 40) and mask.all()


def test_a_corrupt_frame_is_recorded_not_fatal(tmp_path, models):
    out = _ingest(tmp_path, "bad")
    shard = sorted(out.glob("data/**/*.parquet"))[0]
    t = pq.read_table(shard)
    images = t["images"].combine_chunks()
    prim = images.field("primary").to_pylist()
    prim[2] = {"bytes": b"\xff\xd8\xff not a jpeg", "path": None}
    fields = [pa.array(prim, images.type.field("primary").type) if f.name == "primary" else images.field(f.name)
              for f in images.type]
    t = t.set_column(t.schema.get_field_index("images"), "images", pa.StructArray.from_arrays(fields, fields=list(images.type)))
    pq.write_table(t, shard)
    res = run_features(str(out), models["sig"], executor="local")
    led = res.ledger
    assert led["failed"] == 1 and led["balanced"] and led["by_reason"] == {"undecodable_image": 1}
    q = [json.loads(x) for x in (out / "features/sig/quarantine.jsonl").read_text().splitlines()]
    assert len(q) == 1 and q[0]["role"] == "primary" and q[0]["step_index"] == t["step_index"][2].as_py()
    assert q[0]["episode_id"] == t["episode_id"][2].as_py()
    ent = next(s for s in res.manifest["shards"] if s["source"] == str(shard.relative_to(out)))
    ft = pq.read_table(out / ent["path"])
    assert ft["primary_mask"].to_pylist()[2] is False and ft["primary"][2].as_py() is None
    assert sum(ft["primary_mask"].to_pylist()) == ft.num_rows - 1
    FeatureReader(str(out), "sig").shard(ent["source"])  # the manifests agree: the cheap check passes
    with pytest.raises(InputError, match="changed since its features were computed"):
        FeatureReader(str(out), "sig", verify=True).shard(ent["source"])  # the shard was rewritten behind them


@pytest.mark.slow
def test_ray_actor_pool_writes_the_same_bytes(ray_local, tmp_path, models):
    local, ray_out = _ingest(tmp_path, "local"), _ingest(tmp_path, "ray")
    run_features(str(local), models["sig"], tokens=4, batch_size=4, executor="local")
    res = run_features(str(ray_out), models["sig"], tokens=4, batch_size=4, executor="ray")
    assert res.where and "no Ray" not in res.where
    assert _tree(local / "features") == _tree(ray_out / "features")


@pytest.mark.slow
def test_the_encoder_loads_once_per_actor_not_per_task(ray_local, tmp_path, models):
    from vlaflow.pipelines.features import FeaturesStage
    from vlaflow.pipelines.runner import RayExecutor, run_stage

    out = _ingest(tmp_path, "pool")
    loads = tmp_path / "loads"
    loads.mkdir()

    class CountingStage(FeaturesStage):
        def load_worker(self):
            import os
            import uuid

            (loads / f"{os.getpid()}-{uuid.uuid4().hex}").touch()
            return super().load_worker()

    from vlaflow.models import load_vision_encoder
    from vlaflow.pipelines.corpus import Corpus

    shards = [s.path for s in Corpus.open(str(out)).roots[0].manifest.shard_entries()]
    assert len(shards) >= 2
    fp = load_vision_encoder(models["sig"]).info.fingerprint()
    stage = CountingStage(str(out), "sig", models["sig"], 0, "float16", 8, shards, fp)  # no declared roles
    markers = run_stage(stage, RayExecutor())
    assert len(markers) == len(shards) and all((out / m["path"]).exists() for m in markers)
    assert len(list(loads.iterdir())) == 1  # 2 CPUs: a pool of one actor (a CPU left free), loaded once


def test_pool_never_takes_every_cpu():
    from vlaflow.pipelines.features import FeaturesStage
    from vlaflow.pipelines.runner import pool_size

    cpu = FeaturesStage("o", "k", "e", 0, "float16", 8, [], {})
    assert [pool_size(cpu, {"CPU": n}) for n in (1, 2, 3, 16)] == [1, 1, 2, 15]
    gpu = FeaturesStage("o", "k", "e", 0, "float16", 8, [], {}, device="cuda", num_gpus_per_worker=1)
    assert pool_size(gpu, {"CPU": 16, "GPU": 2}) == 2
    assert pool_size(FeaturesStage("o", "k", "e", 0, "float16", 8, [], {}, pool_size=3), {"CPU": 2}) == 3


def test_cli_one_line_errors(corpora, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vlaflow.pipelines.cli import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = CliRunner().invoke(app, ["features", str(corpora["images"]), "--encoder", "nobody/no-such-encoder",
                                 "--executor", "local"])
    assert r.exit_code == 2 and "nobody/no-such-encoder" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["features", str(tmp_path), "--encoder", "x/y", "--executor", "local"])
    assert r.exit_code == 2 and "not a vlaflow ingest output" in r.output
    if not torch.cuda.is_available():
        r = CliRunner().invoke(app, ["features", str(corpora["images"]), "--encoder", "x/y", "--executor", "local",
                                     "--num-gpus", "1"])
        assert r.exit_code == 2 and "no CUDA device" in r.output and "Traceback" not in r.output


def _family_input(family: str, tmp: Path):
    shared = Path(__file__).resolve().parents[2].parent / "shared/fixtures"
    if family == "rlds":
        p = shared / "rlds/octo_bridge_debug/bridge_dataset/1.0.0"
        return ("openx_rlds", p, {}) if p.exists() else None
    if family == "sim":
        p = shared / "sim/generated_robomimic_lift_replay/lift_replay_robomimic_64px.hdf5"
        return ("robomimic", p, {"storage": "mp4"}) if p.exists() else None
    if family == "vln_frames":
        spec = importlib.util.spec_from_file_location("vln_conf", Path(__file__).parents[1] / "converters/vln/conftest.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        (tmp / "vln").mkdir()
        mod.make_frames_folder(tmp / "vln", episodes=2)
        return "vln_frames", tmp / "vln", {}
    from vlaflow.converters.ego.egodex_synth import write_egodex_episode

    write_egodex_episode(tmp / "ego/part1/fold_towel", 0, n_frames=15)
    return "egodex", tmp / "ego", {"storage": "mp4"}


@pytest.mark.parametrize("family", ["rlds", "sim", "vln_frames", "egodex"])
def test_every_source_family(family, tmp_path, models):
    """One output of each family (real RLDS fixture, sim replay and egocentric video as MP4 storage, VLN frames)."""
    found = _family_input(family, tmp_path)
    if found is None:
        pytest.skip(f"{family}: shared fixture not found")
    conv, inp, opts = found
    out = tmp_path / "out"
    run_ingest(IngestConfig(conv, str(inp), str(out), ConverterOptions(extra=opts), executor="local"))
    res = run_features(str(out), models["sig"], executor="local")
    led = res.ledger
    assert led["balanced"] and led["failed"] == 0 and led["frames_in"] > 0
    fr = FeatureReader(str(out), "sig", verify=True)
    for ent in res.manifest["shards"]:
        t = fr.shard(ent["source"], columns=["episode_id", "step_index"])
        for role in ent["roles"]:
            feats, mask = fr.arrays(t, role)
            assert mask.any() and np.isfinite(feats).all() and np.abs(feats[mask]).sum(1).min() > 0
    if opts.get("storage") == "mp4":
        assert list(out.glob("videos/**/*.mp4"))


def test_declared_cameras_get_columns_in_every_shard(corpora, models, tmp_path):
    """A camera the dataset declares but a shard has no frame for: all-null, all-masked columns, same schema."""
    from vlaflow.models import load_vision_encoder
    from vlaflow.pipelines.features import encode_shard

    out = corpora["images"]
    shard = str(sorted(out.glob("data/**/*.parquet"))[0].relative_to(out))
    enc = load_vision_encoder(models["sig"])
    m = encode_shard(str(out), shard, "scratch/declared.parquet", enc, 4, "float16", 0, declared=("primary", "wrist_left"))
    t = pq.read_table(out / "scratch/declared.parquet")
    assert m["roles"] == ["primary", "secondary", "tertiary", "wrist", "wrist_left"]
    assert t["wrist_left"].null_count == t.num_rows and not any(t["wrist_left_mask"].to_pylist())
    assert all(t["primary_mask"].to_pylist())
    m2 = encode_shard(str(out), shard, "scratch/seen.parquet", enc, 4, "float16", 0)
    assert m2["roles"] == ["primary", "secondary", "tertiary", "wrist"]


def test_an_undecodable_video_is_recorded_not_fatal(tmp_path, models):
    out = _ingest(tmp_path, "badmp4", storage="mp4")
    mp4 = sorted(out.glob("videos/**/*.primary.mp4"))[0]
    mp4.write_bytes(mp4.read_bytes()[:200])  # truncated: the file no longer opens
    res = run_features(str(out), models["sig"], executor="local")
    led = res.ledger
    assert led["balanced"] and led["failed"] > 0 and set(led["by_reason"]) == {"undecodable_video"}
    q = [json.loads(x) for x in (out / "features/sig/quarantine.jsonl").read_text().splitlines()]
    assert len(q) == led["failed"] and {x["role"] for x in q} == {"primary"}
    assert all(str(mp4.relative_to(out)) in x["message"] for x in q)
    failed = {(x["episode_id"], x["step_index"]) for x in q}
    for ent in res.manifest["shards"]:
        ft = pq.read_table(out / ent["path"])
        for ep, st, m, w in zip(ft["episode_id"].to_pylist(), ft["step_index"].to_pylist(),
                                ft["primary_mask"].to_pylist(), ft["wrist_mask"].to_pylist()):
            assert m == ((ep, st) not in failed) and w  # the other cameras of those steps are still encoded


def test_memory_is_bounded_and_the_bytes_do_not_change(tmp_path, monkeypatch):
    """Distinct frames' tokens of a shard spill to local disk past a limit (the same bytes as holding them all in
    memory), and a row group whose features would exceed a limit is written as several of whole episodes (the same
    rows, mapped for FeatureReader): the task's peak of traced (numpy/Python) memory no longer grows with the
    shard's tokens."""
    import tracemalloc

    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    import vlaflow.pipelines.features as features
    from vlaflow.models import load_vision_encoder

    torch.manual_seed(0)  # 16 patches of D=256 pooled (up) to 64 tokens: 32 KB of float16 tokens a frame
    SiglipVisionModel(SiglipVisionConfig(image_size=16, patch_size=4, hidden_size=256, num_hidden_layers=1,
                                         num_attention_heads=4, intermediate_size=64)).save_pretrained(tmp_path / "m")
    SiglipImageProcessor(size={"height": 16, "width": 16}).save_pretrained(tmp_path / "m")
    src = tmp_path / "src"
    write_sample_dataset(src, episodes=25, steps=8, shards=1)
    out = tmp_path / "out"
    run_ingest(IngestConfig("openx_rlds", str(src / "bridge_dataset/1.0.0"), str(out), ConverterOptions(),
                            executor="local"))
    shard = str(sorted(out.glob("data/**/*.parquet"))[0].relative_to(out))
    assert pq.ParquetFile(out / shard).num_row_groups == 1  # 25 episodes in one source row group
    enc = load_vision_encoder(str(tmp_path / "m"), tokens=64)
    peaks, markers = {}, {}
    for name, spill, rg in (("memory", 1 << 40, 1 << 40), ("spill", 256 << 10, None), ("bounded", 256 << 10, 1 << 20)):
        tracemalloc.start()
        markers[name] = features.encode_shard(str(out), shard, f"f-{name}.parquet", enc, 32, "float16", 64,
                                              spill_bytes=spill, row_group_bytes=rg)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert (out / "f-memory.parquet").read_bytes() == (out / "f-spill.parquet").read_bytes()
    assert markers["memory"]["sha256"] == markers["spill"]["sha256"]
    assert pq.read_table(out / "f-bounded.parquet").equals(pq.read_table(out / "f-memory.parquet"))
    assert pq.ParquetFile(out / "f-bounded.parquet").num_row_groups > 1
    token_bytes = markers["spill"]["ledger"]["encoded"] * 64 * 256 * 2
    assert markers["spill"]["ledger"]["encoded"] >= 200 and token_bytes >= 6 << 20
    assert peaks["memory"] > token_bytes  # every distinct frame's tokens held at once
    assert peaks["bounded"] < token_bytes / 2, (peaks, token_bytes)  # an episode and a batch at a time
    # end to end with those limits: FeatureReader follows the split row groups to each episode's rows
    monkeypatch.setattr(features, "SPILL_BYTES", 256 << 10)
    monkeypatch.setattr(features, "OUT_ROW_GROUP_BYTES", 1 << 20)
    res = run_features(str(out), str(tmp_path / "m"), tokens=64, batch_size=32, executor="local")
    fr = FeatureReader(str(out), "m")
    whole = {e["source"]: fr.shard(e["source"], columns=["episode_id", "step_index"]) for e in res.manifest["shards"]}
    for ep in fr.corpus.episodes()["episode_id"].to_pylist()[::6]:
        t = fr.episode(ep, columns=["action"])
        toks, mask = fr.arrays(t, "primary", tokens=True)
        ref = next(w for w in whole.values() if ep in set(w["episode_id"].to_pylist()))
        rows = np.flatnonzero(np.asarray(ref["episode_id"].to_pylist()) == ep)
        want, _ = fr.arrays(ref.take(rows), "primary", tokens=True)
        assert t.num_rows == 8 and mask.all() and np.array_equal(toks, want)
