"""The `vlaflow` command as a user runs it: exit codes, one-line errors, plugin discovery."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

VLAFLOW = [sys.executable, "-m", "vlaflow.pipelines.cli"]
ENV = {**os.environ, "RAY_ADDRESS": "", "COLUMNS": "200"}  # rich tables as on a wide terminal


def run(*args, env=None, timeout=300):
    return subprocess.run([*VLAFLOW, *map(str, args)], capture_output=True, text=True, env=env or ENV,
                          timeout=timeout)


def test_sample_job_ingest_validate_and_rerun(tmp_path):
    r = run("sample-rlds", tmp_path / "src", "--episodes", "6", "--steps", "5", "--shards", "2")
    assert r.returncode == 0, r.stderr
    src = Path(r.stdout.strip())
    r = run("ingest", "--converter", "auto", "--input", src, "--output", tmp_path / "out", "--num-cpus", 2)
    assert r.returncode == 0, r.stderr
    assert "episodes/s" in r.stderr and "quarantined" in r.stderr and "converter openx_rlds 1.0" in r.stderr
    r = run("validate", tmp_path / "out")
    assert r.returncode == 0 and "all invariants hold" in r.stderr
    r = run("ingest", "--converter", "openx_rlds", "--input", src, "--output", tmp_path / "out")
    assert r.returncode == 0 and "2 of 2 group(s) already done" in r.stderr


_FEATURES = json.dumps({"featuresDict": {"features": {"steps": {
    "pythonClassName": "tensorflow_datasets.core.features.dataset_feature.Dataset",
    "sequence": {"feature": {"pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
                             "featuresDict": {"features": {"is_first": {
                                 "pythonClassName": "tensorflow_datasets.core.features.scalar.Scalar",
                                 "tensor": {"shape": {}, "dtype": "bool", "encoding": "none"}}}}},
                 "length": "-1"}}}},
    "pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict"})


def test_user_errors_are_one_line(tmp_path):
    for args, msg in ((("--converter", "openx_rlds", "--input", tmp_path / "missing"), "input not found"),
                      (("--converter", "auto", "--input", tmp_path), "no installed converter recognizes"),
                      (("--converter", "openx_rlds", "--input", tmp_path, "--opt", "novalue"), "KEY=VALUE"),
                      (("--converter", "nope", "--input", tmp_path), "unknown converter 'nope'"),
                      (("--converter", "openx_rlds", "--input", tmp_path), "no features.json")):
        r = run("ingest", *args, "--output", tmp_path / "out")
        assert r.returncode == 2
        assert msg in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    r = run("validate", tmp_path)
    assert r.returncode == 2 and "not a vlaflow ingest output" in r.stderr
    empty = tmp_path / "empty" / "1.0.0"
    empty.mkdir(parents=True)
    (empty / "features.json").write_text(_FEATURES)
    (empty / "empty-train.tfrecord-00000-of-00001").write_bytes(b"")
    r = run("ingest", "--converter", "openx_rlds", "--input", empty, "--output", tmp_path / "out")
    assert r.returncode == 2 and "the input is empty" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_quarantine_sets_the_exit_code(tmp_path):
    r = run("sample-rlds", tmp_path / "src", "--episodes", "3", "--steps", "4", "--shards", "1")
    src = Path(r.stdout.strip())
    shard = next(src.glob("*train*"))
    shard.write_bytes(shard.read_bytes()[:-100])
    r = run("ingest", "--converter", "openx_rlds", "--input", src, "--output", tmp_path / "out", "--split", "train")
    assert r.returncode == 3, r.stderr
    assert "truncated_record" in r.stderr
    led = json.loads((tmp_path / "out/meta/ledger.json").read_text())
    assert (led["episodes_in"], led["episodes_out"], led["episodes_quarantined"]) == (3, 2, 1)


PLUGIN = '''
"""A third-party converter: one CSV file per episode (t_ms, dx, dy, grip, instruction)."""
import csv
from pathlib import Path

import numpy as np

from vlaflow.converters import Converter, Rejected, WorkUnit
from vlaflow.schemas import ACTION, DatasetInfo, FeatureMismatch


class CsvArmConverter(Converter):
    name = "demo_csv"
    version = "0.1"
    description = "demo plugin: CSV episodes"

    def datasets(self):
        return [DatasetInfo(name="demo_csv", task_family="manipulation", embodiment="xarm_pusher", fps=10,
                            license="CC0-1.0", converter=self.name, converter_version=self.version,
                            action_raw_keys=["dx[1]", "dy[1]", "grip[1]"])]

    def work_units(self, target_bytes):
        files = sorted(Path(self.input_path).glob("*.csv"))
        return [WorkUnit(str(p), "train", nbytes=p.stat().st_size, file_index=i) for i, p in enumerate(files)]

    def read(self, unit):
        key = f"demo_csv/train/{Path(unit.source).stem}"
        rows = list(csv.DictReader(open(unit.source)))
        try:
            raw = np.array([[float(r["dx"]), float(r["dy"]), float(r["grip"])] for r in rows], np.float32)
        except (KeyError, ValueError) as err:
            yield Rejected(key, FeatureMismatch.code, f"bad row: {err}", unit.source)
            return
        action = np.zeros((len(rows), ACTION.width), np.float32)
        lo, _ = ACTION.range("arm.eef_pos_delta")
        action[:, lo:lo + 2] = raw[:, :2]
        mask = np.zeros(ACTION.width, bool)
        mask[lo:lo + 2] = True
        yield self.make_episode(key, timestamp_ns=[int(r["t_ms"]) * 10**6 for r in rows], action=action,
                                action_mask=mask, action_raw=raw, instruction=rows[0]["instruction"], split="train",
                                source_file=unit.source, source_index=0)
'''


def test_converter_from_a_separate_installed_package(tmp_path):
    pkg = tmp_path / "plugin"
    (pkg / "vlaflow_demo_plugin").mkdir(parents=True)
    (pkg / "vlaflow_demo_plugin/__init__.py").write_text(textwrap.dedent(PLUGIN))
    (pkg / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "vlaflow-demo-plugin"
        version = "0.1"
        [project.entry-points."vlaflow.converters"]
        demo_csv = "vlaflow_demo_plugin:CsvArmConverter"
        [tool.setuptools]
        packages = ["vlaflow_demo_plugin"]
    """))
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(site), str(pkg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    env = {**ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    r = run("converters", env=env)
    assert "demo_csv" in r.stdout and "openx_rlds" in r.stdout
    data = tmp_path / "csv"
    data.mkdir()
    for i in range(3):
        (data / f"ep{i}.csv").write_text("t_ms,dx,dy,grip,instruction\n" + "".join(
            f"{k * 100},{0.01 * k},{-0.02 * i},1,push block {i}\n" for k in range(4)))
    (data / "ep9.csv").write_text("t_ms,dx,dy,grip,instruction\n0,abc,0,1,broken\n")
    r = run("ingest", "--converter", "demo_csv", "--input", data, "--output", tmp_path / "out", env=env)
    assert r.returncode == 3, r.stderr  # the broken file is quarantined, the rest converted
    led = json.loads((tmp_path / "out/meta/ledger.json").read_text())
    assert (led["episodes_out"], led["episodes_quarantined"]) == (3, 1)
    r = run("validate", tmp_path / "out", env=env)
    assert r.returncode == 0, r.stderr


def test_runs_on_an_existing_cluster_from_ray_address(tmp_path):
    """`ray start --head` in its own process, then RAY_ADDRESS: the ingest joins it, starts nothing.

    `RAY_ADDRESS=auto` resolves through ``<RAY_TMPDIR>/ray/ray_current_cluster`` and, without that file, joins
    whatever GCS process it finds on the machine (another test's or session's Ray, perhaps shutting down: "lost
    objects"). So the head and the ingest share a private RAY_TMPDIR, and the ingest starts only once the head
    has written that file (`ray start` prints "Ray runtime started" before writing it). The head's output is
    drained so that a full pipe can never stall it."""
    import socket
    import tempfile
    import threading
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = tempfile.mkdtemp(prefix="vr", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**ENV, "RAY_TMPDIR": base}
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}",
                             "--num-cpus=2", "--object-store-memory=150000000", "--include-dashboard=false",
                             "--disable-usage-stats", "--block", f"--temp-dir={base}/ray"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen = []
    try:
        for line in head.stdout:  # wait until the head is up
            seen.append(line)
            if "Ray runtime started" in line:
                break
        else:
            pytest.fail("ray start --head did not come up: " + "".join(seen[-20:]))
        threading.Thread(target=lambda: seen.extend(head.stdout), daemon=True).start()
        address_file = Path(base, "ray", "ray_current_cluster")
        deadline = time.monotonic() + 60
        while not address_file.exists() and head.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert address_file.exists(), "ray start --head wrote no address file: " + "".join(seen[-20:])
        assert address_file.read_text().strip().endswith(f":{port}")
        r = run("sample-rlds", tmp_path / "src", "--episodes", "3", "--steps", "4", "--shards", "1")
        src = Path(r.stdout.strip())
        r = run("ingest", "--converter", "openx_rlds", "--input", src, "--output", tmp_path / "out",
                env={**env, "RAY_ADDRESS": "auto"})
        assert r.returncode == 0, r.stderr
        assert "on the Ray cluster at auto (2 CPUs)" in r.stderr
    finally:
        head.terminate()
        head.wait(60)


def test_r2r_split_file_with_connectivity_flag(tmp_path):
    r2r = Path(__file__).resolve().parents[2].parent / "shared/fixtures/vln/r2r_discrete"
    if not (r2r / "R2R_val_seen.json").exists():
        pytest.skip(f"real R2R fixture not found at {r2r}")
    r = run("ingest", "--converter", "r2r", "--input", r2r / "R2R_val_seen.json", "--connectivity",
            r2r / "connectivity", "--output", tmp_path / "out")
    assert r.returncode == 3, r.stderr  # paths whose scan graph is absent are quarantined
    led = json.loads((tmp_path / "out/meta/ledger.json").read_text())
    assert (led["episodes_out"], led["by_reason"]) == (84, {"missing_connectivity": 937})


def test_epic_with_frames_root_flag_and_auto_detection(tmp_path):
    """`--input` the CSV, `--frames-root` the media; a segment whose media are absent is quarantined."""
    import csv

    from vlaflow.converters import sniff
    from vlaflow.converters.ego.egodex_synth import write_egodex_episode

    shared = Path(__file__).resolve().parents[2].parent / "shared/fixtures/ego"
    frames = shared / "epic_fields_frames"
    if not frames.is_dir():
        pytest.skip(f"real EPIC frames not found at {frames}")
    header = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
              "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
              "noun_class", "all_nouns", "all_noun_classes"]
    ann = tmp_path / "EPIC_100_mine.csv"
    with ann.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for nid, vid in (("P28_101_0", "P28_101"), ("P99_01_0", "P99_01")):
            w.writerow([nid, vid[:3], vid, "00:00:01.7", "00:00:01.60", "00:00:02.30", 80, 115, "open drawer",
                        "open", 3, "drawer", 8, "['drawer']", "[8]"])
    write_egodex_episode(tmp_path / "egodex" / "part1" / "fold", 0)
    assert sniff(str(ann)) == "epic_kitchens" and sniff(str(tmp_path / "egodex")) == "egodex"
    r = run("ingest", "--converter", "auto", "--input", ann, "--frames-root", frames, "--opt", "fps=50",
            "--output", tmp_path / "out")
    assert r.returncode == 3, r.stderr
    led = json.loads((tmp_path / "out/meta/ledger.json").read_text())
    assert (led["episodes_out"], led["by_reason"]) == (1, {"missing_frames": 1})
    assert run("validate", tmp_path / "out").returncode == 0


def test_two_families_in_one_corpus_root_through_the_cli(tmp_path):
    """Open-X (Ray) and EgoDex (in-process) into one root; stats per dataset and merged per embodiment."""
    from vlaflow.converters.ego.egodex_synth import write_egodex_episode

    r = run("sample-rlds", tmp_path / "src", "--episodes", "4", "--steps", "5", "--shards", "1")
    src = Path(r.stdout.strip())
    for i in range(2):
        write_egodex_episode(tmp_path / "ego" / "part1" / "fold_towel", i, n_frames=12, width=64, height=48, seed=i)
    root = tmp_path / "corpus"
    r = run("ingest", "--converter", "openx_rlds", "--input", src, "--output", root, "--num-cpus", 2)
    assert r.returncode == 0, r.stderr
    r = run("ingest", "--converter", "egodex", "--input", tmp_path / "ego", "--output", root, "--executor", "local")
    assert r.returncode == 0 and "on this process (no Ray)" in r.stderr, r.stderr
    r = run("validate", root)
    assert r.returncode == 0 and "10 episodes" in r.stderr, r.stderr
    r = run("corpus", root)
    assert r.returncode == 0 and "bridge_dataset" in r.stdout and "egocentric" in r.stdout
    r = run("stats", root, "--executor", "local")
    assert r.returncode == 0, r.stderr
    assert "bridge_dataset/widowx_250" in r.stderr and "egodex/human_hands" in r.stderr
    assert "merged per embodiment" in r.stderr
    doc = json.loads((root / "meta/stats.json").read_text())
    assert set(doc["embodiments"]) == {"widowx_250", "human_hands"} and (root / "meta/stats/partials.bin").exists()
    r = run("stats", root, "--executor", "spark")
    assert r.returncode == 2 and "--executor must be one of" in r.stderr and "Traceback" not in r.stderr


def test_converters_lists_each_converters_typed_options():
    r = run("converters", "--options")
    assert r.returncode == 0, r.stderr
    assert "r2r --opt keys:" in r.stdout and "turn_deg=15" in r.stdout
    assert "robomimic --opt keys:" in r.stdout and "embodiment=" in r.stdout


def test_an_output_that_is_a_file_and_a_broken_catalog_are_one_line_errors(tmp_path):
    r = run("sample-rlds", tmp_path / "src", "--episodes", "2", "--steps", "3", "--shards", "1")
    src = Path(r.stdout.strip())
    (tmp_path / "afile").write_text("x")
    r = run("ingest", "--converter", "openx_rlds", "--input", src, "--output", tmp_path / "afile", "--executor", "local")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    (tmp_path / "broken/meta").mkdir(parents=True)
    (tmp_path / "broken/meta/manifest.json").write_text("{not json")
    for cmd in ("validate", "stats", "corpus"):
        r = run(cmd, tmp_path / "broken")
        assert r.returncode == 2 and "meta/manifest.json: unreadable" in r.stderr and "Traceback" not in r.stderr
