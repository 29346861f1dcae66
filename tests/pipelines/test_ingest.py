"""End-to-end ingest through Ray on the real Open-X fixture and on deliberately broken data."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from tensorflow_datasets.proto import tf_example_generated_pb2 as example_pb2

from vlaflow.converters import ConverterOptions
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.layout import EPISODES, LEDGER, MANIFEST, QUARANTINE, dataset_file, group_marker
from vlaflow.pipelines.validate import validate_output
from vlaflow.schemas import ACTION, Col

pytestmark = pytest.mark.slow


def shard_files(out: Path) -> list[Path]:
    return sorted(out.glob("data/**/*.parquet"))


@pytest.fixture(scope="module")
def bridge_out(bridge_fixture, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("bridge_out")
    result = run_ingest(IngestConfig("openx_rlds", str(bridge_fixture), str(out)))
    return out, result


def test_fixture_arrives_whole_and_validates(bridge_out):
    out, result = bridge_out
    led = json.loads((out / LEDGER).read_text())
    assert led["episodes_in"] == led["episodes_out"] == 50 and led["episodes_quarantined"] == 0
    assert led["steps_out"] == 500 and led["balanced"]
    problems, stats = validate_output(str(out), check_images=True)
    assert problems == [] and stats == {"shards": 2, "episodes": 50, "rows": 500, "datasets": 1}
    manifest = json.loads((out / MANIFEST).read_text())
    assert {s["split"]: s["episodes"] for s in manifest["shards"]} == {"train": 25, "val": 25}
    assert manifest["ingests"]["bridge_dataset"]["converter"] == "openx_rlds" and manifest["schema_version"]
    assert result.manifest["converter"] == "openx_rlds" and result.manifest["shards"] == manifest["shards"]
    for sh in manifest["shards"]:
        pf = pq.ParquetFile(out / sh["path"])
        assert pf.num_row_groups == sh["row_groups"] == 1  # 25 short episodes fit one bounded row group
        assert pf.metadata.row_group(0).column(0).compression == "ZSTD"


def test_shards_carry_source_bytes_untouched(bridge_out, bridge_fixture):
    out, _ = bridge_out
    data = (bridge_fixture / "bridge_dataset-val.tfrecord-00000-of-00001").read_bytes()
    src, off = [], 0
    while off < len(data):
        (n,) = struct.unpack_from("<Q", data, off)
        src.append(example_pb2.Example.FromString(data[off + 12:off + 12 + n]).features.feature)
        off += n + 16
    table = pq.read_table(out / "data/bridge_dataset/val/chunk-000/shard-00000.parquet")
    imgs = table[Col.IMAGES].combine_chunks().field("primary").field("bytes").to_pylist()
    raw = table[Col.ACTION_RAW].combine_chunks().values.to_numpy().reshape(-1, 7)
    want_img = [b for f in src for b in f["steps/observation/image_0"].bytes_list.value]
    want_act = np.concatenate([np.array(f["steps/action"].float_list.value, np.float32) for f in src])
    assert imgs == want_img
    assert raw.tobytes() == want_act.reshape(-1, 7).tobytes()
    instr = table[Col.INSTRUCTION].to_pylist()
    assert instr[::10] == [f["steps/language_instruction"].bytes_list.value[0].decode() for f in src]
    eps = pq.read_table(out / EPISODES).to_pylist()
    assert len(eps) == 50 and len({e["episode_id"] for e in eps}) == 50
    assert all(e["length"] == 10 and e["shard_file"].endswith(".parquet") and e["row_group"] == 0 for e in eps)


def test_output_opens_in_polars_datasets_and_ray(bridge_out, ray_local):
    import datasets
    import polars as pl
    import ray

    out, _ = bridge_out
    files = [str(p) for p in shard_files(out)]
    df = pl.read_parquet(files)
    assert df.height == 500 and df.schema["action"] == pl.Array(pl.Float32, ACTION.width)
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(out / "hf_cache"))
    assert len(ds) == 500 and type(ds.features["images"]["primary"]).__name__ == "Image"
    assert ds[0]["images"]["primary"].size == (64, 64)
    rds = ray.data.read_parquet(files).select_columns([Col.EPISODE_ID, Col.ACTION])
    assert rds.count() == 500


def _write_broken_dataset(root: Path) -> Path:
    """Sample data with one of each bad-input case."""
    from vlaflow.converters.openx_rlds.synth import bridge_like_episode, bridge_like_features, write_rlds_dataset

    rng = np.random.default_rng(7)
    eps = [bridge_like_episode(rng, i, 5) for i in range(8)]
    eps[2]["steps"][1]["action"] = np.array([np.nan] * 7, np.float32)  # NaN action
    eps[4]["steps"][3]["observation"]["image_0"] = b"\xff\xd8\xff\xe0 truncated jpeg"  # undecodable image
    path = write_rlds_dataset(root, "bridge_dataset", "1.0.0", bridge_like_features(), {"train": eps}, 2)
    shard0 = path / "bridge_dataset-train.tfrecord-00000-of-00002"
    data = bytearray(shard0.read_bytes())
    (n0,) = struct.unpack_from("<Q", data, 0)
    data[n0 + 16 + 100] ^= 0x40  # flipped byte in record 1 → CRC mismatch
    shard0.write_bytes(bytes(data))
    shard1 = path / "bridge_dataset-train.tfrecord-00001-of-00002"
    data = shard1.read_bytes()
    shard1.write_bytes(data[:-500])  # truncated last record
    return path


def test_bad_input_is_quarantined_and_the_ledger_adds_up(tmp_path, ray_local):
    src = _write_broken_dataset(tmp_path / "src")
    out = tmp_path / "out"
    result = run_ingest(IngestConfig("openx_rlds", str(src), str(out)))
    led = result.ledger
    assert led["episodes_in"] == 8 and led["episodes_out"] == 4 and led["episodes_quarantined"] == 4
    assert led["episodes_in"] == led["episodes_out"] + led["episodes_quarantined"]
    assert led["by_reason"] == {"corrupt_record": 1, "non_finite_value": 1, "truncated_record": 1,
                                "undecodable_image": 1}
    assert not result.clean
    q = [json.loads(line) for line in (out / QUARANTINE).read_text().splitlines()]
    assert {r["episode_key"] for r in q} == {"bridge_dataset/train/00000-000001", "bridge_dataset/train/00000-000002",
                                             "bridge_dataset/train/00001-000000", "bridge_dataset/train/00001-000003"}
    nan = next(r for r in q if r["code"] == "non_finite_value")
    assert "step 1" in nan["reason"] and nan["steps"] == 5
    problems, stats = validate_output(str(out))
    assert problems == [] and stats["episodes"] == 4


def test_resume_after_interruption_is_byte_identical(tmp_path, ray_local):
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset

    src = write_sample_dataset(tmp_path / "src", episodes=12, steps=6, shards=3)
    cfg = lambda out: IngestConfig("openx_rlds", str(src), str(out), ConverterOptions(), target_shard_mb=0.3)  # noqa: E731
    full = tmp_path / "full"
    first = run_ingest(cfg(full))
    assert first.groups_total == 6 and first.groups_skipped == 0
    part = tmp_path / "part"
    run_ingest(cfg(part))
    # Simulate a crash: one shard was never finished, another half-written, the summaries never written.
    (part / group_marker("bridge_dataset", 1)).unlink()
    victim = part / "data/bridge_dataset/train/chunk-000/shard-00002.parquet"
    victim.write_bytes(victim.read_bytes()[:1000])
    for rel in (MANIFEST, LEDGER, dataset_file("bridge_dataset", MANIFEST), dataset_file("bridge_dataset", LEDGER)):
        (part / rel).unlink()
    again = run_ingest(cfg(part))
    assert again.groups_skipped == 4
    files_full = sorted(p.relative_to(full) for p in full.rglob("*") if p.is_file())
    files_part = sorted(p.relative_to(part) for p in part.rglob("*") if p.is_file())
    assert files_full == files_part
    for rel in files_full:
        assert (full / rel).read_bytes() == (part / rel).read_bytes(), rel
    assert run_ingest(cfg(full)).groups_skipped == 6  # a finished run is a no-op
    # Source files bigger than the target are split by record ranges; nothing is lost or doubled.
    small = run_ingest(IngestConfig("openx_rlds", str(src), str(tmp_path / "small"), target_shard_mb=0.1))
    assert small.groups_total > 6 and small.ledger["episodes_out"] == 24
    assert validate_output(str(tmp_path / "small"))[0] == []


def test_validate_catches_tampering(tmp_path, ray_local):
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset

    src = write_sample_dataset(tmp_path / "src", episodes=4, steps=5, shards=1)
    out = tmp_path / "out"
    run_ingest(IngestConfig("openx_rlds", str(src), str(out), ConverterOptions(split="train")))
    assert validate_output(str(out))[0] == []
    shard = shard_files(out)[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    (out / "data/stray.parquet").write_bytes(b"x")
    problems, _ = validate_output(str(out))
    assert any("sha256 mismatch" in p for p in problems)
    assert any("not in the manifest" in p for p in problems)


def test_output_uri_and_refusing_to_mix_inputs(tmp_path, ray_local):
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset
    from vlaflow.schemas import InputError

    a = write_sample_dataset(tmp_path / "a", episodes=3, steps=4, shards=1)
    b = write_sample_dataset(tmp_path / "b", episodes=3, steps=4, shards=1, seed=1)
    uri = (tmp_path / "out").as_uri()  # file:///...: any pyarrow filesystem URI works the same way
    result = run_ingest(IngestConfig("openx_rlds", str(a), uri))
    assert result.ledger["episodes_out"] == 6
    assert validate_output(uri)[0] == []
    with pytest.raises(InputError, match="already holds dataset 'bridge_dataset' ingested from a different input"):
        run_ingest(IngestConfig("openx_rlds", str(b), uri))


def test_converter_warnings_reach_the_manifest(tmp_path, ray_local):
    from vlaflow.converters.openx_rlds.synth import bridge_like_episode, bridge_like_features, write_rlds_dataset

    rng = np.random.default_rng(3)
    src = write_rlds_dataset(tmp_path / "src", "my_robot", "0.1.0", bridge_like_features(),
                             {"train": [bridge_like_episode(rng, i, 4) for i in range(2)]})
    result = run_ingest(IngestConfig("openx_rlds", str(src), str(tmp_path / "out")))
    assert any("no spec for dataset 'my_robot'" in w for w in result.warnings)
    assert any("no spec for dataset 'my_robot'" in w for w in result.manifest["warnings"])
    assert validate_output(str(tmp_path / "out"))[0] == []
