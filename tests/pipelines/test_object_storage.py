"""Every stage on object storage: a real S3-protocol server (moto, started here on 127.0.0.1, a random port), ingest
into s3:// (interrupted midway, then resumed), stats and features read from and written to s3://, publishing from
s3:// — all byte-identical to the same run on local disk. And published roots (``hf://datasets/...``, here an
fsspec filesystem over a dry-run folder) open for reading in every stage but are never written."""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from vlaflow.converters import ConverterOptions
from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.pipelines import runner
from vlaflow.pipelines.corpus import Corpus
from vlaflow.pipelines.features import FeatureReader, run_features
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.publish import RetryPolicy, plan_publish, publish
from vlaflow.pipelines.stats import run_stats
from vlaflow.schemas import InputError
from vlaflow.tokenization.statistics.spec import StatsSpec

pytest.importorskip("moto", reason="moto[server] (the test extra) runs the local S3 server")

HERE = Path(__file__).parent
_load = lambda name, path: (lambda s: (s.loader.exec_module(m := importlib.util.module_from_spec(s)), m)[1])(
    importlib.util.spec_from_file_location(name, path))
hub_fake = _load("hub_fake", HERE / "hub_fake.py")
encoders = _load("enc_helpers", HERE.parent / "models/test_vision_encoders.py")

BUCKET = "vlaflow-test"
SECRET = "s3-secret-NEVER-logged-0123456789"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 (random port); credentials and endpoint from the standard variables."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"AWS_ACCESS_KEY_ID": "vlaflow-test-key", "AWS_SECRET_ACCESS_KEY": SECRET,
                     "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
                     "AWS_EC2_METADATA_DISABLED": "true"}.items():
            mp.setenv(k, v)
        boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"]).create_bucket(Bucket=BUCKET)
        yield f"s3://{BUCKET}"
    server.stop()


def _s3_tree(uri: str) -> dict[str, bytes]:
    fs, root = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    out = {}
    for i in infos:
        if i.type == pafs.FileType.File:
            with fs.open_input_stream(i.path) as f:
                out[os.path.relpath(i.path, root)] = f.read()
    return out


def _local_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _all_stages(src: Path, out: str, model: str, interrupt_after: int | None = None, monkeypatch=None) -> None:
    cfg = IngestConfig("openx_rlds", str(src), out, ConverterOptions(), executor="local", target_shard_mb=0.02)
    if interrupt_after is not None:
        real, calls = runner.execute, []

        def dying(*a, **k):  # the process dies after `interrupt_after` groups were uploaded
            calls.append(1)
            if len(calls) > interrupt_after:
                raise KeyboardInterrupt
            return real(*a, **k)

        monkeypatch.setattr(runner, "execute", dying)
        with pytest.raises(KeyboardInterrupt):
            run_ingest(cfg)
        monkeypatch.setattr(runner, "execute", real)
        res = run_ingest(cfg)
        assert res.groups_skipped == interrupt_after and res.groups_total > interrupt_after
    else:
        run_ingest(cfg)
    run_stats(out, executor="local")
    run_features(out, model, executor="local", batch_size=4)


@pytest.fixture(scope="module")
def runs(s3, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("objstore")
    src = write_sample_dataset(tmp / "src", episodes=8, steps=4, shards=2)
    model = str(encoders.save_tiny_siglip(tmp / "siglip"))
    local = tmp / "local"
    _all_stages(src, str(local), model)
    with pytest.MonkeyPatch.context() as mp:
        _all_stages(src, f"{s3}/corpus", model, interrupt_after=2, monkeypatch=mp)
    return {"local": local, "s3": f"{s3}/corpus", "tmp": tmp, "model": model}


def test_ingest_stats_features_on_s3_are_byte_identical_to_local(runs):
    local, remote = _local_tree(runs["local"]), _s3_tree(runs["s3"])
    assert any(k.startswith("features/") and k.endswith(".parquet") for k in local)
    assert "meta/stats.json" in local and sum(k.startswith("data/") for k in local) >= 3
    assert sorted(remote) == sorted(local)
    assert [k for k in local if local[k] != remote[k]] == []
    assert not any(k.endswith(".tmp") for k in remote)  # the interrupted run left no half object behind


def test_readers_and_a_rerun_on_s3(runs):
    c = Corpus.open(runs["s3"])
    ep = c.episodes()["episode_id"][0].as_py()
    assert c.read_episode(ep).equals(Corpus.open(str(runs["local"])).read_episode(ep))
    fr = FeatureReader(runs["s3"], "siglip", verify=True)
    shard = fr.manifest["shards"][0]["source"]
    assert fr.shard(shard).equals(FeatureReader(str(runs["local"]), "siglip").shard(shard))
    assert run_stats(runs["s3"], executor="local").cached  # read back from s3, nothing recomputed
    again = run_features(runs["s3"], runs["model"], executor="local", batch_size=4)
    assert again.shards_skipped == again.shards_total


def test_publish_from_s3_uploads_the_same_bytes(runs, caplog):
    caplog.set_level(logging.DEBUG)
    hub = hub_fake.FakeHub()
    res = publish(runs["s3"], "org/from-s3", api=hub, with_features=True, policy=RetryPolicy(sleep=lambda s: None))
    plan = plan_publish(str(runs["local"]), "org/from-s3", with_features=True)
    remote = hub.tree("org/from-s3")
    remote.pop(".gitattributes")
    local = {f.path: plan.card.encode() if f.path == "README.md" else (runs["local"] / f.path).read_bytes()
             for f in plan.files}
    assert remote == local and res.uploaded_files == len(local)
    assert any(p.startswith("features/siglip/") for p in remote) and "features-siglip" in remote["README.md"].decode()
    assert SECRET not in caplog.text and str(runs["tmp"]) not in remote["README.md"].decode()


# ------------------------------------------------------------------------------------------------- hf:// roots
@pytest.fixture
def hf_snapshot(runs, tmp_path, monkeypatch):
    """``hf://datasets/org/published`` served by an fsspec filesystem over a dry-run folder (no network)."""
    import sys

    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    base = tmp_path / "hub"
    publish(str(runs["local"]), "org/published", with_features=True, dry_run=str(base / "datasets/org/published"))

    class Snapshot(DirFileSystem):
        protocol = "hf"
        cachable = False

        def __init__(self, *args, **kwargs):
            super().__init__(path=str(base), fs=LocalFileSystem())

    monkeypatch.setitem(sys.modules["fsspec.registry"]._registry, "hf", Snapshot)
    return "hf://datasets/org/published", base / "datasets/org/published"


def test_stages_read_an_hf_root_and_never_write_it(runs, hf_snapshot, tmp_path):
    uri, folder = hf_snapshot
    before = _local_tree(folder)
    c = Corpus.open(uri)
    assert c.datasets().keys() == Corpus.open(str(runs["local"])).datasets().keys()
    ep = c.episodes()["episode_id"][-1].as_py()
    assert c.read_episode(ep).num_rows > 0 and len(c.frames(ep, "primary")) == c.read_episode(ep).num_rows
    assert run_stats(uri, executor="local").cached  # the published stats are current: read, not recomputed
    with pytest.raises(InputError, match="published root and is only read"):
        run_stats(uri, StatsSpec(k=512), executor="local")
    fr = FeatureReader(uri, "siglip", verify=True)
    assert fr.shard(fr.manifest["shards"][0]["source"]).num_rows == fr.manifest["shards"][0]["rows"]
    # a corpus YAML over the hf root computes beside the YAML, the same numbers as on the local root
    mix = tmp_path / "mix.yaml"
    mix.write_text(f"roots:\n  - path: {uri}\n")
    doc = run_stats(str(mix), StatsSpec(k=512), executor="local").stats
    shutil.copytree(runs["local"], tmp_path / "copy")
    want = run_stats(str(tmp_path / "copy"), StatsSpec(k=512), executor="local").stats
    assert doc["groups"] == want["groups"] and (tmp_path / "mix.stats.json").exists()
    assert _local_tree(folder) == before


def test_hf_uris_resolve_to_huggingface_hubs_filesystem_read_only():
    from huggingface_hub import HfFileSystem

    from vlaflow.media.fs import resolve
    from vlaflow.pipelines.storage import Output

    fs, path = resolve("hf://datasets/org/name@v1")  # constructing it touches no network
    assert isinstance(fs.handler.fs, HfFileSystem) and path == "datasets/org/name@v1"
    out = Output("hf://datasets/org/name")
    assert out.read_only and not Output("memory://vlaflow-test/x").read_only
    with pytest.raises(InputError, match="published root and is only read"):
        out.write_json("meta/stats.json", {})
