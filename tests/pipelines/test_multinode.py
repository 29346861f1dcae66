"""A real local multi-node Ray cluster (``ray.cluster_utils.Cluster``, a head and two worker raylets): ingest and
stats run unchanged, and a worker node removed mid-ingest either costs nothing (Ray retries its tasks) or fails
the run with a clear message that a rerun resumes; either way the output equals the one-process run byte for byte.

Runs in a subprocess so the cluster never meets the session's Ray."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent('''
    import json, sys, threading, time
    from pathlib import Path
    import ray
    from ray.cluster_utils import Cluster
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest
    from vlaflow.pipelines.stats import run_stats
    from vlaflow.schemas import VlaflowError

    src, out, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    store = 80 << 20
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store,
                                                            "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1, object_store_memory=store) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    cluster.wait_for_nodes()
    report = {"nodes": len([n for n in ray.nodes() if n["Alive"]])}
    cfg = IngestConfig("openx_rlds", src, str(out), target_shard_mb=1.0, executor="ray")
    if mode == "remove":
        def remove_when_started():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not list(out.glob("meta/datasets/*/_work/group-*.json")):
                time.sleep(0.01)
            cluster.remove_node(workers[0])
            report["removed_after_markers"] = len(list(out.glob("meta/datasets/*/_work/group-*.json")))
        t = threading.Thread(target=remove_when_started)
        t.start()
    try:
        res = run_ingest(cfg)
        report["first_run"] = "completed"
    except VlaflowError as err:
        report["first_run"] = "error: " + str(err)
    except Exception as err:
        report["first_run"] = "crash: " + type(err).__name__ + ": " + str(err).splitlines()[0][:200]
    if mode == "remove":
        t.join()
    res = run_ingest(cfg)  # a rerun: resumes whatever the first one left, or skips everything
    report["ledger"] = res.ledger
    report["skipped"] = res.groups_skipped
    report["total"] = res.groups_total
    report["first_result"] = report.get("first_run")
    report["stats_rows"] = run_stats(str(out), executor="ray").stats["rows"]
    print("REPORT " + json.dumps(report), flush=True)
    import os
    os._exit(0)  # Ray's exit hooks on a cluster whose node was removed must not decide the exit code
''')


def _run(src: Path, out: Path, mode: str) -> dict:
    env = {**os.environ, "RAY_ADDRESS": ""}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(src), str(out), mode], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source_and_reference(tmp_path_factory):
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest
    from vlaflow.pipelines.stats import run_stats

    src = write_sample_dataset(tmp_path_factory.mktemp("src"), episodes=24, steps=20, shards=4)
    ref = tmp_path_factory.mktemp("ref") / "out"
    run_ingest(IngestConfig("openx_rlds", str(src), str(ref), target_shard_mb=1.0, executor="local"))
    run_stats(str(ref), executor="local")
    return src, ref


def test_three_raylets_ingest_and_stats_unchanged_and_survive_a_lost_node(source_and_reference, tmp_path):
    src, ref = source_and_reference
    report = _run(src, tmp_path / "out", "remove")
    print(report)
    assert report["nodes"] == 3
    assert report["first_run"] == "completed" or report["first_run"].startswith("error: "), report["first_run"]
    led = report["ledger"]
    assert led["balanced"] and led["episodes_in"] == led["episodes_out"] == 48
    assert report["stats_rows"] == 960
    if report["first_run"] == "completed":
        assert report["skipped"] == report["total"]  # nothing was left to do
    assert _files(ref) == _files(tmp_path / "out")
