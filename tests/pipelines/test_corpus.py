"""A corpus: two datasets of different families in one root, its catalog, stats per dataset and merged per
embodiment, a corpus YAML spanning roots, and the reader every later stage builds on."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from vlaflow.converters import ConverterOptions, openx_rlds
from vlaflow.converters.ego.egodex_synth import write_egodex_episode
from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.pipelines.cli import app
from vlaflow.pipelines.corpus import Corpus
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.layout import EPISODES, LEDGER, MANIFEST, QUARANTINE, dataset_file
from vlaflow.pipelines.stats import StatsStage, run_stats
from vlaflow.pipelines.validate import validate_output
from vlaflow.schemas import InputError, SpecError
from vlaflow.tokenization.statistics.accumulator import StatsAccumulator


def _bridge(tmp: Path, name: str = "bridge_dataset", episodes: int = 6, seed: int = 0) -> Path:
    return write_sample_dataset(tmp / f"src_{name}_{seed}", episodes=episodes, steps=5, shards=2, seed=seed)


def _egodex(tmp: Path) -> Path:
    src = tmp / "ego_src"
    for i in range(2):
        write_egodex_episode(src / "part1" / "fold_towel", i, n_frames=12, width=64, height=48, seed=i)
    return src


@pytest.fixture(scope="module")
def two_family_root(tmp_path_factory):
    """Open-X manipulation + EgoDex egocentric ingested into ONE root, in this process."""
    tmp = tmp_path_factory.mktemp("corpus")
    root = tmp / "corpus"
    a = run_ingest(IngestConfig("openx_rlds", str(_bridge(tmp)), str(root), executor="local"))
    b = run_ingest(IngestConfig("egodex", str(_egodex(tmp)), str(root), executor="local"))
    return tmp, root, a, b


def test_two_datasets_of_two_families_share_a_root(two_family_root):
    _, root, a, b = two_family_root
    cat = json.loads((root / MANIFEST).read_text())
    assert sorted(cat["datasets"]) == ["bridge_dataset", "egodex"]
    assert {n: e["task_family"] for n, e in cat["ingests"].items()} == {"bridge_dataset": "manipulation",
                                                                       "egodex": "egocentric"}
    # the root's shards / ledger / episodes are the union of the datasets' own files
    assert {s["dataset"] for s in cat["shards"]} == {"bridge_dataset", "egodex"}
    assert cat["totals"]["episodes"] == a.ledger["episodes_out"] + b.ledger["episodes_out"] == 14
    led = json.loads((root / LEDGER).read_text())
    assert led["episodes_in"] == a.ledger["episodes_in"] + b.ledger["episodes_in"] and led["balanced"]
    eps = pq.read_table(root / EPISODES)
    assert sorted(set(eps["dataset"].to_pylist())) == ["bridge_dataset", "egodex"] and eps.num_rows == 14
    for name, res in (("bridge_dataset", a), ("egodex", b)):
        own = json.loads((root / dataset_file(name, MANIFEST)).read_text())
        assert own == res.manifest and own["converter"] in ("openx_rlds", "egodex")
        assert (root / dataset_file(name, QUARANTINE)).exists()
        assert cat["ingests"][name]["manifest"] == dataset_file(name, MANIFEST)
    problems, stats = validate_output(str(root))
    assert problems == [] and stats["datasets"] == 2 and stats["episodes"] == 14


def test_rerunning_one_ingest_resumes_only_it_and_a_different_input_is_refused(two_family_root):
    tmp, root, a, _ = two_family_root
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    again = run_ingest(IngestConfig("openx_rlds", str(_bridge(tmp)), str(root), executor="local"))
    assert again.groups_skipped == again.groups_total == a.groups_total
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    other = _bridge(tmp, seed=7)  # same dataset name, different content
    with pytest.raises(InputError, match="already holds dataset 'bridge_dataset'"):
        run_ingest(IngestConfig("openx_rlds", str(other), str(root), executor="local"))


def test_validate_catches_a_dataset_file_rewritten_behind_the_catalog(two_family_root, tmp_path):
    _, root, _, _ = two_family_root
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    led_path = copy / dataset_file("egodex", LEDGER)
    led = json.loads(led_path.read_text())
    led["episodes_in"] += 1
    led_path.write_text(json.dumps(led))
    problems, _ = validate_output(str(copy))
    assert any("does not balance" in p for p in problems)
    assert any("not the sum of the datasets' ledgers" in p for p in problems)


def test_corpus_stats_per_dataset_and_merged_per_embodiment(tmp_path):
    """Two Open-X datasets of ONE embodiment in one root: per-dataset groups, and the embodiment's merged
    view equals a single accumulator over both datasets' rows."""
    root = tmp_path / "root"
    run_ingest(IngestConfig("openx_rlds", str(_bridge(tmp_path)), str(root), executor="local"))
    builtin = Path(openx_rlds.__file__).parent / "specs"
    spec = tmp_path / "spec.yaml"  # the same robot, published as a second dataset
    spec.write_text((builtin / "bridge_dataset.yaml").read_text().replace("dataset: bridge_dataset",
                                                                          "dataset: bridge_copy"))
    run_ingest(IngestConfig("openx_rlds", str(_bridge(tmp_path, seed=3)), str(root),
                            ConverterOptions(spec_file=str(spec)), executor="local"))
    res = run_stats(str(root), executor="local")
    doc = res.stats
    assert set(doc["groups"]) == {"bridge_dataset/widowx_250", "bridge_copy/widowx_250"}
    merged = doc["embodiments"]["widowx_250"]
    assert merged["datasets"] == ["bridge_copy", "bridge_dataset"]
    assert merged["rows"] == sum(g["rows"] for g in doc["groups"].values())
    # the partials beside stats.json are the whole story: they reload and render the same document
    acc = StatsAccumulator.from_bytes((root / "meta/stats/partials.bin").read_bytes())
    assert acc.to_json()["embodiments"] == doc["embodiments"]
    # merging is exact for moments: counts add, the mean is the count-weighted mean of the datasets'
    parts = [doc["groups"][k]["action"]["arm.eef_pos_delta"] for k in sorted(doc["groups"])]
    got = merged["action"]["arm.eef_pos_delta"]
    counts = np.array([p["count"] for p in parts], float)
    assert got["count"] == counts.sum(0).astype(int).tolist() and counts.min() > 0
    want = (np.array([p["mean"] for p in parts]) * counts).sum(0) / counts.sum(0)
    np.testing.assert_allclose(got["mean"], want, rtol=1e-9)
    assert got["min"] == np.minimum(*[p["min"] for p in parts]).tolist()


def test_corpus_yaml_spans_roots_with_weights(two_family_root, tmp_path, monkeypatch):
    tmp, root, _, _ = two_family_root
    other = tmp_path / "other"
    run_ingest(IngestConfig("openx_rlds", str(_bridge(tmp_path, seed=5)), str(other), executor="local"))
    doc = tmp_path / "mix.yaml"
    doc.write_text(f"roots:\n  - path: {root}\n    datasets: [egodex]\n    weights: {{egodex: 0.25}}\n"
                   f"  - path: other\n")
    c = Corpus.open(str(doc))
    assert sorted(c.datasets()) == ["bridge_dataset", "egodex"]
    assert c.root_of("bridge_dataset").uri.endswith("other") and c.weights() == {"egodex": 0.25}
    assert c.episodes().num_rows == 2 + 12  # egodex from the first root only, bridge from the second
    ep = c.episodes().filter(pc.equal(c.episodes()["dataset"].cast("string"), "egodex"))["episode_id"][0].as_py()
    steps = c.read_episode(ep, columns=["episode_id", "step_index"])
    assert steps["step_index"].to_pylist() == list(range(steps.num_rows)) and steps.num_rows > 0
    # mixtures resolve against the catalog, the YAML's weights applied over the preset's
    eps = c.episodes().to_pylist()
    assert c.catalog()["egodex"]["rows"] == sum(e["length"] for e in eps if e["dataset"] == "egodex") > 0
    assert c.catalog()["bridge_dataset"]["task_family"] == "manipulation"
    assert c.mixture("uniform") == pytest.approx({"bridge_dataset": 1 / 1.25, "egodex": 0.25 / 1.25})
    unified = c.mixture("unified")
    assert unified["egodex"] == pytest.approx(0.1 / 0.7) and sum(unified.values()) == pytest.approx(1)
    before = {p: p.read_bytes() for r in (root, other) for p in sorted((r / "meta").rglob("*")) if p.is_file()}
    res = run_stats(str(doc), executor="local")
    assert Path(res.path) == tmp_path / "mix.stats.json" and not res.cached
    assert {g["dataset"] for g in res.stats["groups"].values()} == {"bridge_dataset", "egodex"}
    assert [r["datasets"] for r in res.stats["roots"]] == [["egodex"], ["bridge_dataset"]]
    # only the selected datasets' shards were read, and the roots were not written to (they may be read-only)
    assert res.stats["shards"] == sum(1 for r, s in c.shards())
    after = {p: p.read_bytes() for r in (root, other) for p in sorted((r / "meta").rglob("*")) if p.is_file()}
    assert after == before and not (tmp_path / "mix.stats-work").exists()
    again = run_stats(str(doc), executor="local")
    assert again.cached and again.stats == res.stats
    # a root's own current statistics are reused as they are: the same numbers as computing them here
    run_stats(str(other), executor="local")
    (tmp_path / "mix.stats.json").unlink()
    computed = []
    real = StatsStage.merged
    monkeypatch.setattr(StatsStage, "merged", lambda self, *a, **k: computed.append(self.source_uri) or real(self, *a, **k))
    reused = run_stats(str(doc), executor="local")
    assert not reused.cached and computed == [str(root)]  # the second root's saved partials were used
    assert reused.stats["groups"]["bridge_dataset/widowx_250"] == res.stats["groups"]["bridge_dataset/widowx_250"]
    out = CliRunner().invoke(app, ["corpus", str(doc)])
    assert out.exit_code == 0 and "egodex" in out.output and "0.25" in out.output


@pytest.mark.parametrize("text,message", [
    ("roots: []\n", "needs `roots:`"),
    ("roots:\n  - path: nowhere\n", "not a vlaflow ingest output"),
    ("roots:\n  - {path: ROOT, datasets: [nope]}\n", "dataset(s) ['nope'] not in"),
    ("roots:\n  - {path: ROOT, colour: red}\n", "unknown key(s) ['colour']"),
    ("roots:\n  - {path: ROOT, weights: {egodex: -1}}\n", "non-negative"),
    ("roots: [\n", "not valid YAML"),
])
def test_corpus_yaml_errors_are_one_line(two_family_root, tmp_path, text, message):
    _, root, _, _ = two_family_root
    doc = tmp_path / "c.yaml"
    doc.write_text(text.replace("ROOT", str(root)))
    with pytest.raises((InputError, SpecError)) as err:
        Corpus.open(str(doc))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_reader_decodes_an_episodes_frames_from_images_and_from_mp4(two_family_root, tmp_path):
    import io

    from PIL import Image

    tmp, root, _, _ = two_family_root
    c = Corpus.open(str(root))
    eid = c.episodes().filter(pc.equal(c.episodes()["dataset"].cast("string"), "bridge_dataset"))["episode_id"][0].as_py()
    steps = c.read_episode(eid, columns=["episode_id", "images"])
    frames = c.frames(eid, "primary")
    raw = steps["images"].combine_chunks().field("primary").field("bytes").to_pylist()
    assert len(frames) == steps.num_rows == 5
    for got, data in zip(frames, raw):
        np.testing.assert_array_equal(got, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    with pytest.raises(InputError, match="no frames for camera 'wrist_left'"):
        c.frames(eid, "wrist_left")
    with pytest.raises(InputError, match="is not in"):
        c.frames("nope/0", "primary")
    # the same source stored as MP4 references: the reader decodes them to (nearly) the same pixels
    mp4 = tmp_path / "mp4"
    run_ingest(IngestConfig("openx_rlds", str(_bridge(tmp)), str(mp4), ConverterOptions(extra={"storage": "mp4"}),
                            executor="local"))
    video = Corpus.open(str(mp4)).frames(eid, "primary")
    assert len(video) == len(frames)
    err = np.mean([np.abs(a.astype(float) - b.astype(float)).mean() for a, b in zip(video, frames)])
    assert err < 8.0


def test_validate_takes_a_corpus_yaml_and_reports_per_root(two_family_root, tmp_path):
    _, root, _, _ = two_family_root
    doc = tmp_path / "one.yaml"
    doc.write_text(f"roots:\n  - path: {root}\n    datasets: [egodex]\n")
    problems, stats = validate_output(str(doc))
    assert problems == [] and stats["datasets"] == 2  # each root is validated whole
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / dataset_file("bridge_dataset", QUARANTINE)).unlink()
    (copy / "meta/datasets/zombie").mkdir()
    (copy / "meta/datasets/zombie/manifest.json").write_text("{}")
    doc.write_text("roots:\n  - path: copy\n")
    problems, _ = validate_output(str(doc))
    assert any(p.startswith(f"{copy}: dataset bridge_dataset: ") and "quarantine.jsonl missing" in p for p in problems)
    assert any("meta/datasets/zombie" in p and "does not list" in p for p in problems)


def test_relative_roots_resolve_against_the_yaml_location_with_its_scheme():
    from vlaflow.pipelines.corpus import _relative_to

    assert _relative_to("s3://bucket/mixes/mix.yaml", "../corpus") == "s3://bucket/corpus"
    assert _relative_to("/data/mixes/mix.yaml", "./a/../b") == "/data/mixes/b"
    assert _relative_to("mix.yaml", "out") == "out" and _relative_to("x/mix.yaml", "gs://b/c") == "gs://b/c"


def test_the_same_input_spelled_differently_resumes(tmp_path, monkeypatch):
    src = _bridge(tmp_path)
    first = run_ingest(IngestConfig("openx_rlds", str(src), str(tmp_path / "out"), executor="local"))
    monkeypatch.chdir(src.parent)
    again = run_ingest(IngestConfig("openx_rlds", "./1.0.0/", str(tmp_path / "out"), executor="local"))
    assert again.groups_skipped == again.groups_total == first.groups_total
    with pytest.raises(InputError, match="--target-shard-mb must be positive"):
        run_ingest(IngestConfig("openx_rlds", str(src), str(tmp_path / "o2"), target_shard_mb=-1, executor="local"))
