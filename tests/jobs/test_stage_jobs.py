"""The stage entry points (`jobs/*.py --config <yaml>`) on the sample data, in this process: each reads its own
section of one config file; a typo or a missing key exits 2 with one line naming it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.models.tiny_encoders import save_tiny_siglip

REPO = Path(__file__).resolve().parents[2]


def _job(stage: str, config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "jobs" / f"{stage}.py"), "--config", str(config), *extra],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def test_ingest_stats_features_jobs_read_their_sections(tmp_path):
    src = write_sample_dataset(tmp_path / "src", episodes=3, steps=4, shards=1)
    out = tmp_path / "out"
    cfg = tmp_path / "chain.yaml"
    cfg.write_text(f"""ingest: {{converter: openx_rlds, input: {src}, output: {out}, executor: local}}
stats: {{output: {out}, executor: local}}
features: {{output: {out}, encoder: {save_tiny_siglip(tmp_path / "enc")}, executor: local}}
train: {{data: {{corpus: {out}}}}}
""")
    for stage in ("ingest", "stats", "features"):
        r = _job(stage, cfg)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.startswith(f"{stage}: ")
    assert json.loads((out / "meta/stats.json").read_text())["rows"] == 3 * 4 * 2
    assert (out / "features/enc/manifest.json").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"stats: {{outptu: {out}}}\n")
    r = _job("stats", bad)
    assert r.returncode == 2 and "stats.outptu: unknown key (did you mean 'output'?)" in r.stderr
    assert "Traceback" not in r.stderr
    r = _job("ingest", bad)
    assert r.returncode == 2 and "no `ingest:` section" in r.stderr
