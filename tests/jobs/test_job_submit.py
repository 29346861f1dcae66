"""The train job through a real local cluster: `ray start --head`, `ray job submit --working-dir . -- python
jobs/train.py --config ...` on the sample data (2 gloo workers); the job is stopped after its first checkpoint and the
same submission resumes it and runs to the end. The head runs in its own temp dir on free ports and is torn down by its process ids."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.models.tiny_encoders import save_tiny_siglip
from vlaflow.pipelines.features import run_features
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.stats import run_stats

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    import psutil

    if not (BIN / "ray").exists():
        pytest.skip("the `ray` CLI is not beside this Python")
    temp = tempfile.mkdtemp(prefix="/tmp/vfr")  # short: Ray's socket paths must stay under ~107 characters
    gcs, dash, client = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={gcs}", f"--dashboard-port={dash}",
                    f"--dashboard-agent-listen-port={_free_port()}", f"--ray-client-server-port={client}",
                    "--min-worker-port=30000", "--max-worker-port=30999", "--num-cpus=2",
                    "--object-store-memory=150000000", f"--temp-dir={temp}", "--disable-usage-stats"],
                   check=True, env=env, capture_output=True, timeout=120)
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        def ours(args):  # the head's processes: its temp dir, or its GCS address (the client server has neither)
            return any(temp in a or a.endswith(f":{gcs}") or a == f"--port={client}" for a in args)

        mine = [p for p in psutil.process_iter(["pid", "cmdline"]) if ours(p.info["cmdline"] or [])]
        for p in mine:
            p.terminate()
        _, alive = psutil.wait_procs(mine, timeout=15)
        for p in alive:
            p.kill()


def _submit(address: str, env: dict, config: Path, *overrides: str, wait: bool = True,
            job_id: str | None = None) -> subprocess.CompletedProcess:
    extra = ([] if wait else ["--no-wait"]) + (["--submission-id", job_id] if job_id else [])
    return subprocess.run([str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO),
                           *extra, "--", "python", "jobs/train.py", "--config", str(config), *overrides],
                          env=env, capture_output=True, text=True, timeout=600)


def _result(out: str) -> dict:
    line = next(ln for ln in out.splitlines() if ln.startswith("train: {"))
    return json.loads(line[len("train: "):])


def test_train_job_submitted_to_a_local_cluster_succeeds_and_resumes(head, tmp_path):
    address, env = head
    src = write_sample_dataset(tmp_path / "src", episodes=6, steps=8, shards=2)
    root = tmp_path / "corpus"
    run_ingest(IngestConfig("openx_rlds", str(src), str(root), executor="local"))
    run_stats(str(root), executor="local")
    run_features(str(root), str(save_tiny_siglip(tmp_path / "enc")), executor="local")
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"""train:
  output: {tmp_path / "runs"}
  name: submitted
  steps: 12
  batch_size: 4
  checkpoint_every: 4
  log_every: 4
  num_workers: 2
  cpus_per_worker: 0.5
  data: {{corpus: {root}, horizon: 4, epochs: 2}}
  model: {{dit_layers: 2, dit_hidden: 64, dit_heads: 2, dit_head_dim: 16}}
""")
    t0 = time.time()
    # a first job is stopped (killed) once its first checkpoint is on disk
    r = _submit(address, env, cfg, wait=False, job_id="vlaflow-first")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    first_ckpt = tmp_path / "runs/submitted/checkpoint_00000004/progress.json"
    deadline = time.time() + 400
    while not first_ckpt.exists() and time.time() < deadline:
        time.sleep(1)
    assert first_ckpt.exists(), "the first job wrote no checkpoint"
    subprocess.run([str(BIN / "ray"), "job", "stop", "--address", address, "vlaflow-first"], env=env,
                   capture_output=True, timeout=120)
    status = subprocess.run([str(BIN / "ray"), "job", "status", "--address", address, "vlaflow-first"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert "was stopped" in status.stdout + status.stderr
    killed_at = json.loads(first_ckpt.read_text())["step"]
    # the same submission again: it resumes from the latest checkpoint and finishes the run
    r = _submit(address, env, cfg)
    assert r.returncode == 0 and "succeeded" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    second = _result(r.stdout)
    assert second["resumed_from"] >= killed_at == 4 and second["step"] == 12
    assert second["samples_consumed"] == 12 * 4 * 2 and second["loss"] == second["loss"]
    assert Path(second["checkpoint"]).name == "checkpoint_00000012"
    # a config typo fails the job with one line naming the key
    r = _submit(address, env, cfg, "stepz=3")
    assert r.returncode != 0 and "train.stepz: unknown key" in r.stdout + r.stderr
    print(f"ray job submit round trip: {time.time() - t0:.0f} s")
