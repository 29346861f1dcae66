"""The corrupt-input corpus: for every converter, one valid input, then each of its files broken in turn
(truncated, bytes flipped, emptied, replaced by garbage). Every run either refuses the input in one named line
(a broken manifest such as features.json) or finishes with the damage quarantined under a named reason, the
ledger balanced (in = out + quarantined), the quarantine listing exactly the quarantined episodes, and an output
that passes ``vlaflow validate``. The CLI runs a subset and must show no traceback.

Format-specific damage (NaN/inf, wrong dtype/shape, missing keys, wrong encodings, unsafe paths, huge declared
lengths) is in each converter's own tests and in the fuzz tests; this file is the table across converters."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from vlaflow.converters import ConverterOptions
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.validate import validate_output
from vlaflow.schemas import VlaflowError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VLAFLOW_SHARED", REPO.parent / "shared")) / "fixtures"


def _conftest(rel: str):
    spec = importlib.util.spec_from_file_location(f"_corrupt_{rel.replace('/', '_')}", REPO / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real fixture not found at {path} (needs ../shared beside the repo)")
    return path


# --- one valid input per converter: (input path, options, the files worth breaking) ----------------------------
def _openx(tmp: Path):
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset

    src = write_sample_dataset(tmp / "rlds", episodes=3, steps=4, shards=2)
    return src, {}, sorted(p for p in src.iterdir() if "tfrecord" in p.name) + [src / "features.json"]


def _robomimic(tmp: Path):
    f = tmp / "lift" / "demo.hdf5"
    f.parent.mkdir()
    shutil.copy(_need(SHARED / "sim/generated_robomimic_lift_replay/lift_replay_robomimic_64px.hdf5"), f)
    return f, {}, [f]


def _libero(tmp: Path):
    gen = _conftest("tests/converters/sim/conftest.py")
    f = tmp / "libero_10" / "KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5"
    gen.write_libero(f, demos=(3, 2), size=8)
    return f, {}, [f]


def _maniskill(tmp: Path):
    gen = _conftest("tests/converters/sim/conftest.py")
    gen.write_maniskill(tmp / "PickCube-v1" / "motionplanning", n=3, t=4)
    files = sorted((tmp / "PickCube-v1").rglob("*.*"))
    return tmp / "PickCube-v1", {}, files


def _robotwin(tmp: Path):
    gen = _conftest("tests/converters/sim/conftest.py")
    gen.write_robotwin_xpl(tmp / "xpl" / "episode0.hdf5")
    return tmp / "xpl", {}, sorted((tmp / "xpl").rglob("*.hdf5"))


def _r2r(tmp: Path):
    r2r = _need(SHARED / "vln/r2r_discrete")
    f = tmp / "R2R_val_seen.json"
    f.write_text(json.dumps(json.loads((r2r / "R2R_val_seen.json").read_text())[:4]))
    return f, {"connectivity": str(r2r / "connectivity")}, [f]


def _rxr(tmp: Path):
    vln = _conftest("tests/converters/vln/conftest.py")
    conn = _need(SHARED / "vln/r2r_discrete/connectivity")
    (tmp / "rxr").mkdir(parents=True)
    f = vln.write_jsonl(tmp / "rxr" / "rxr_val_seen_guide.jsonl.gz",
                        vln.make_rxr_lines(conn, ["s8pcmisQ38h"], 4), gz=True)
    return tmp / "rxr", {"connectivity": str(conn)}, [f]


def _vln_frames(tmp: Path):
    vln = _conftest("tests/converters/vln/conftest.py")
    vln.make_frames_folder(tmp / "frames", episodes=3)
    files = [tmp / "frames/annotations.json"] + sorted((tmp / "frames/images").rglob("*.jpg"))[:2]
    return tmp / "frames", {}, files


def _egodex(tmp: Path):
    from vlaflow.converters.ego.egodex_synth import write_egodex_episode

    for i in range(2):
        write_egodex_episode(tmp / "egodex" / "part1" / "fold_towel", i, seed=i, n_frames=15)
    return tmp / "egodex", {}, sorted((tmp / "egodex").rglob("*.*"))


def _llava(tmp: Path):
    vl = _conftest("tests/converters/vl/conftest.py")
    path, _ = vl.write_llava(tmp / "llava", jsonl=True)
    return path, {}, [path] + sorted((tmp / "llava").rglob("*.jpg"))[:1]


def _vl_table(tmp: Path):
    vl = _conftest("tests/converters/vl/conftest.py")
    root, _ = vl.write_vqa_table(tmp / "vqav2")
    return root, {"id_column": "question_id"}, sorted(root.rglob("*.parquet"))[:2]


def _lerobot(tmp: Path):
    root = tmp / "aloha_video"
    shutil.copytree(REPO / "tests/fixtures/lerobot/aloha_video", root)
    read = [p for p in root.rglob("*") if p.suffix in (".parquet", ".mp4") or p.name == "info.json"]
    return root, {}, sorted(read)  # meta/stats.json is not read: vlaflow computes its own statistics


@dataclass(frozen=True)
class Case:
    converter: str
    make: Callable


CASES = [Case("openx_rlds", _openx), Case("robomimic", _robomimic), Case("libero", _libero),
         Case("maniskill", _maniskill), Case("robotwin", _robotwin), Case("r2r", _r2r), Case("rxr", _rxr),
         Case("vln_frames", _vln_frames), Case("egodex", _egodex), Case("llava", _llava),
         Case("vl_table", _vl_table), Case("lerobot", _lerobot)]


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip(p: Path) -> None:
    b = bytearray(p.read_bytes())
    mid = len(b) // 2
    for i in range(mid, min(mid + 32, len(b))):
        b[i] ^= 0xA5
    p.write_bytes(bytes(b))


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _garbage(p: Path) -> None:
    p.write_bytes(os.urandom(max(p.stat().st_size, 64)))


DAMAGE = {"truncated": _truncate, "flipped": _flip, "empty": _empty, "garbage": _garbage}


def _check_run(converter: str, src: Path, opts: dict, out: Path) -> str:
    """'refused: <line>' or 'ran: <reasons>'; asserts the run's promises either way."""
    try:
        res = run_ingest(IngestConfig(converter, str(src), str(out), ConverterOptions(extra=opts), executor="local"))
    except VlaflowError as err:
        msg = str(err)
        assert msg and "\n" not in msg and "Traceback" not in msg
        return f"refused: {msg}"
    led = res.ledger
    assert led["balanced"]
    assert led["episodes_in"] == led["episodes_out"] + led["episodes_quarantined"]
    assert led["steps_in"] == led["steps_out"] + led["steps_quarantined"]
    lines = [json.loads(x) for x in (out / "meta/quarantine.jsonl").read_text().splitlines()]
    assert len(lines) == led["episodes_quarantined"]
    for q in lines:
        assert q["code"] and q["reason"] and "\n" not in q["reason"] and "Traceback" not in q["reason"]
    problems, _ = validate_output(str(out))
    assert problems == []
    return f"ran: {sorted(led['by_reason'])}"


@pytest.mark.parametrize("case", CASES, ids=[c.converter for c in CASES])
def test_every_file_broken_every_way(case, tmp_path):
    (tmp_path / "valid").mkdir()
    src, opts, files = case.make(tmp_path / "valid")
    clean = _check_run(case.converter, src, opts, tmp_path / "clean")
    assert clean.startswith("ran: ")
    seen = {}
    for fi, victim in enumerate(files):
        rel = victim.relative_to(tmp_path / "valid")
        for name, damage in DAMAGE.items():
            work = tmp_path / f"w{fi}-{name}"
            shutil.copytree(tmp_path / "valid", work, symlinks=True)
            damage(work / rel)
            wsrc = work / src.relative_to(tmp_path / "valid")
            seen[(str(rel), name)] = _check_run(case.converter, wsrc, opts, tmp_path / f"out{fi}-{name}")
    # Cut, emptied or replaced files never pass unnoticed: each is refused in one line or quarantined under a
    # named reason. (Flipped bytes may land inside image data that nothing can check, so they may pass.)
    silent = [k for k, v in seen.items() if k[1] != "flipped" and v == "ran: []"]
    assert silent == [], silent


VLAFLOW = [sys.executable, "-m", "vlaflow.pipelines.cli"]


@pytest.mark.slow
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[5], CASES[8]], ids=lambda c: c.converter)
def test_the_console_never_shows_a_traceback(case, tmp_path):
    (tmp_path / "valid").mkdir()
    src, opts, files = case.make(tmp_path / "valid")
    _garbage(files[0])
    args = [*VLAFLOW, "ingest", "--converter", case.converter, "--input", str(src), "--output", str(tmp_path / "out")]
    for k, v in opts.items():
        args += ["--opt", f"{k}={v}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_ADDRESS": ""})
    assert r.returncode in (2, 3), r.stderr  # refused in one line, or finished with quarantined episodes
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    if r.returncode == 2:
        assert len(r.stderr.strip().splitlines()) == 1
    else:
        assert "quarantined" in r.stderr
