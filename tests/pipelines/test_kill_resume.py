"""SIGKILL a running ingest / stats (the whole process tree) at several points, rerun the same command, and get
byte-for-byte the output of an uninterrupted run: no episode lost or doubled, no half file visible as finished."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vlaflow.pipelines.layout import LOCK

pytestmark = pytest.mark.slow

VLAFLOW = [sys.executable, "-m", "vlaflow.pipelines.cli"]
ENV = {**os.environ, "RAY_ADDRESS": "", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset

    return write_sample_dataset(tmp_path_factory.mktemp("src"), episodes=40, steps=30, shards=4)


def _ingest_args(src: Path, out: Path, executor: str) -> list[str]:
    return ["ingest", "--converter", "openx_rlds", "--input", str(src), "--output", str(out), "--executor", executor,
            "--target-shard-mb", "1.5", "--num-cpus", "2"]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([*VLAFLOW, *args], capture_output=True, text=True, env=ENV, timeout=300)


def _kill_when(args: list[str], ready, timeout: float = 120) -> bool:
    """Start the command in its own process group and SIGKILL the whole group once ``ready()``; False when the
    command finished before that point was seen (the kill came too late to test anything)."""
    proc = subprocess.Popen([*VLAFLOW, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.002)
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_same(full: Path, part: Path) -> None:
    a, b = _files(full), _files(part)
    assert sorted(a) == sorted(b)
    for rel in a:
        assert a[rel] == b[rel], rel
    ids = [e for f in sorted(part.glob("data/**/*.parquet"))
           for e in pq.read_table(f, columns=["episode_id"]).column(0).unique().to_pylist()]
    assert len(ids) == len(set(ids)) == 80


def _glob(root: Path, pattern: str):
    return lambda: any(root.glob(pattern))


@pytest.fixture(scope="module")
def uninterrupted(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "out"
    r = _run(_ingest_args(source, out, "local"))
    assert r.returncode == 0, r.stderr
    r = _run(["stats", str(out), "--executor", "local"])
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("point,pattern", [
    ("while reading (plan written, nothing converted)", "meta/datasets/*/_work/plan.json"),
    ("during a shard write", "data/**/*.parquet.tmp"),
    ("between shards", "meta/datasets/*/_work/group-000002.json"),
])
def test_ingest_killed_locally_resumes_byte_identical(point, pattern, source, uninterrupted, tmp_path):
    out = tmp_path / "out"
    assert _kill_when(_ingest_args(source, out, "local"), _glob(out, pattern)), f"never saw {point}"
    assert not (out / "meta/manifest.json").exists()  # the killed run finished nothing it shows as finished
    if pattern.endswith(".tmp"):
        assert not any(p.with_suffix("").exists() for p in out.glob(pattern))  # the shard being written isn't visible
    assert (out / LOCK).exists()  # the dead run's lock is left behind ...
    r = _run(_ingest_args(source, out, "local"))  # ... and taken over: its owner's pid is gone
    assert r.returncode == 0, r.stderr
    r = _run(["stats", str(out), "--executor", "local"])
    assert r.returncode == 0, r.stderr
    _assert_same(uninterrupted, out)


def test_ingest_killed_on_ray_resumes_byte_identical(source, uninterrupted, tmp_path):
    out = tmp_path / "out"
    assert _kill_when(_ingest_args(source, out, "ray"), _glob(out, "meta/datasets/*/_work/group-*.json"))
    r = _run(_ingest_args(source, out, "ray"))
    assert r.returncode == 0, r.stderr
    r = _run(["stats", str(out), "--executor", "local"])
    assert r.returncode == 0, r.stderr
    _assert_same(uninterrupted, out)


def test_stats_killed_resumes_byte_identical(source, uninterrupted, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(uninterrupted, out)
    for f in [out / "meta/stats.json", *sorted((out / "meta/stats").rglob("*"))]:
        if f.is_file():
            f.unlink()
    assert _kill_when(["stats", str(out), "--executor", "local"], _glob(out, "meta/stats/_work/*/shard-*.json"))
    assert not (out / "meta/stats.json").exists()
    r = _run(["stats", str(out), "--executor", "local"])
    assert r.returncode == 0, r.stderr
    _assert_same(uninterrupted, out)


def test_a_second_run_on_a_busy_root_is_refused_until_its_owner_dies(source, tmp_path):
    out = tmp_path / "out"
    assert _run(_ingest_args(source, out, "local")).returncode == 0
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from vlaflow.pipelines.lock import RunLock; "
        "RunLock(sys.argv[1], 'vlaflow ingest (the first run)').acquire(); print('held', flush=True); time.sleep(300)"),
        str(out)], stdout=subprocess.PIPE, text=True, env=ENV, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for args in (_ingest_args(source, out, "local"), ["stats", str(out), "--executor", "local"]):
            r = _run(args)
            assert r.returncode == 2, r.stderr
            assert "is in use by `vlaflow ingest (the first run)`" in r.stderr and f"pid {holder.pid}" in r.stderr
            assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert not (out / "meta/stats.json").exists()  # refused before touching anything
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    r = _run(["stats", str(out), "--executor", "local"])  # the owner is dead: its lock is stale and taken over
    assert r.returncode == 0, r.stderr
    assert not (out / LOCK).exists()


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    import torch
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / "tiny-siglip"
    SiglipVisionModel(SiglipVisionConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=37)).save_pretrained(path)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def test_features_killed_resumes_byte_identical(uninterrupted, tiny_encoder, tmp_path):
    import shutil

    ref = tmp_path / "ref"
    shutil.copytree(uninterrupted, ref)
    args = lambda out: ["features", str(out), "--encoder", str(tiny_encoder), "--executor", "local"]  # noqa: E731
    r = _run(args(ref))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    shutil.copytree(uninterrupted, out)
    assert _kill_when(args(out), _glob(out, "features/tiny-siglip/_work/*shard*.json"))
    assert not (out / "features/tiny-siglip/manifest.json").exists()
    r = _run(args(out))
    assert r.returncode == 0, r.stderr
    _assert_same(ref, out)
