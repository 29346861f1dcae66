"""The stage runner: Ray and in-process executors write the same bytes (ingest and stats), markers written
last make reruns skip finished tasks, and a task that fails leaves no marker."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from vlaflow.converters import ConverterOptions
from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.runner import LocalExecutor, Stage, Task, make_executor, pending, run_stage
from vlaflow.pipelines.stats import run_stats
from vlaflow.pipelines.storage import Output
from vlaflow.schemas import InputError


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_ray_and_local_executors_write_identical_bytes(tmp_path, ray_local):
    src = write_sample_dataset(tmp_path / "src", episodes=12, steps=6, shards=3)
    trees = {}
    for kind in ("ray", "local"):
        out = tmp_path / kind
        res = run_ingest(IngestConfig("openx_rlds", str(src), str(out), ConverterOptions(split="train"),
                                      target_shard_mb=0.02, executor=kind))
        assert res.groups_total >= 3 and res.ledger["episodes_out"] == 12
        stats = run_stats(str(out), executor=kind)
        assert not stats.cached and stats.stats["rows"] == 72
        trees[kind] = _tree(out)
    assert trees["ray"].keys() == trees["local"].keys()
    differ = [k for k in trees["ray"] if trees["ray"][k] != trees["local"][k]]
    assert differ == []
    assert any(k.startswith("data/") for k in trees["ray"]) and "meta/stats.json" in trees["ray"]


@dataclass
class _Squares(Stage):
    """A toy stage: task i writes i*i to a file, then its marker; task 3 fails until ``ok`` exists."""

    output_uri: str
    n: int
    name: str = "squares"

    def tasks(self) -> list[Task]:
        return [Task(i, f"meta/_work/sq-{i}.json") for i in range(self.n)]

    def run_task(self, task: Task, progress) -> dict:
        out = Output(self.output_uri)
        if task.id == 3 and not out.exists("ok"):
            raise RuntimeError("task 3 fails the first time")
        out.write_json(f"sq/{task.id}.json", task.id * task.id)
        progress(1, task.id)
        return {"value": task.id * task.id}


def test_markers_last_failed_tasks_rerun_finished_ones_are_skipped(tmp_path):
    stage = _Squares(str(tmp_path), 6)
    seen = []
    with pytest.raises(RuntimeError, match="fails the first time"):
        run_stage(stage, LocalExecutor(), lambda e, s, d, t: seen.append((e, s, d, t)))
    assert [t.id for t in pending(stage)] == [3, 4, 5]  # no marker for the task that failed
    assert not (tmp_path / "meta/_work/sq-3.json").exists()
    (tmp_path / "ok").write_text("")
    first = {i: (tmp_path / f"sq/{i}.json").stat().st_mtime_ns for i in range(3)}
    calls = []
    results = run_stage(stage, LocalExecutor(), lambda e, s, d, t: calls.append((d, t)))
    assert [r["value"] for r in results] == [0, 1, 4, 9, 16, 25]
    assert calls[-1] == (3, 3)  # only the three pending tasks ran
    assert {i: (tmp_path / f"sq/{i}.json").stat().st_mtime_ns for i in range(3)} == first
    assert run_stage(stage, LocalExecutor()) == results and pending(stage) == []


def test_unknown_executor_is_a_one_line_error():
    with pytest.raises(InputError, match="--executor must be one of auto, ray, local"):
        make_executor("spark")


def test_local_executor_never_starts_ray(tmp_path, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: (_ for _ in ()).throw(AssertionError("Ray started")))
    src = write_sample_dataset(tmp_path / "src", episodes=3, steps=4, shards=1)
    res = run_ingest(IngestConfig("openx_rlds", str(src), str(tmp_path / "out"), executor="local"))
    assert res.ledger["episodes_out"] == 6 and res.ray == "this process (no Ray)"
    doc = json.loads((tmp_path / "out/meta/manifest.json").read_text())
    assert doc["ingests"]["bridge_dataset"]["totals"]["episodes"] == 6


@dataclass
class _Refuses(Stage):
    """A stage whose second task meets bad input: the kind of error a user must see as one line."""

    output_uri: str
    name: str = "refuses"

    def tasks(self) -> list[Task]:
        return [Task(i, f"meta/_work/r-{i}.json") for i in range(2)]

    def run_task(self, task: Task, progress) -> dict:
        if task.id == 1:
            raise InputError("input.bin: not a thing we read")
        return {}


@pytest.mark.slow
def test_a_user_error_in_a_ray_task_reaches_the_driver_as_itself(tmp_path, ray_local):
    import sys

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    with pytest.raises(InputError) as err:
        run_stage(_Refuses(str(tmp_path)), make_executor("ray"))
    assert str(err.value) == "input.bin: not a thing we read"
    assert (tmp_path / "meta/_work/r-0.json").exists() and not (tmp_path / "meta/_work/r-1.json").exists()


def test_auto_executor_runs_small_inputs_here_and_respects_a_cluster(monkeypatch):
    from vlaflow.pipelines.runner import AUTO_LOCAL_BYTES, LocalExecutor, RayExecutor, make_executor

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert isinstance(make_executor("auto", work_bytes=AUTO_LOCAL_BYTES - 1), LocalExecutor)
    assert isinstance(make_executor("auto", work_bytes=AUTO_LOCAL_BYTES), RayExecutor)
    assert isinstance(make_executor("auto"), RayExecutor)  # unknown size: Ray
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert isinstance(make_executor("auto", work_bytes=1), RayExecutor)  # a cluster was asked for
