"""LeRobot fixtures: tiny v3.0 datasets written by LeRobot 0.4.4's own writer (``scripts/make_lerobot_fixtures.py``,
committed under ``tests/fixtures/lerobot``), copies of them with faults put in, and the v2.1 layout made from
them the way LeRobot v2.1 stored a dataset (per-episode parquet and MP4, JSON-lines metadata)."""
from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlaflow.converters import ConverterOptions
from vlaflow.converters.base import Rejected
from vlaflow.converters.lerobot import LeRobotConverter
from vlaflow.schemas import Episode

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "lerobot"
V21_DATA = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not (path / "meta/info.json").is_file():
        pytest.skip(f"LeRobot fixture {path} missing (regenerate: scripts/make_lerobot_fixtures.py)")
    return path


def expected(name: str) -> dict:
    return json.loads((FIXTURES / name / "expected.json").read_text())


def copy_fixture(name: str, tmp: Path) -> Path:
    dst = tmp / name
    shutil.copytree(fixture(name), dst)
    return dst


def convert(path: Path, **extra) -> tuple[LeRobotConverter, list[Episode], list[Rejected]]:
    conv = LeRobotConverter(str(path), ConverterOptions(extra={k: str(v) for k, v in extra.items()}))
    eps, rej = [], []
    for unit in conv.work_units(1 << 30):
        for item in conv.read(unit):
            (rej if isinstance(item, Rejected) else eps).append(item)
    return conv, eps, rej


def edit_episodes(root: Path, fn) -> None:
    """Rewrite the v3 episodes table: ``fn(rows)`` edits the list of row dicts in place."""
    path = next((root / "meta/episodes").glob("*/*.parquet"))
    t = pq.read_table(path)
    rows = t.to_pylist()
    fn(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), path)


def edit_data(root: Path, fn) -> None:
    """Rewrite the (one) v3 data file: ``fn(table) -> table``."""
    path = next((root / "data").glob("*/*.parquet"))
    pq.write_table(fn(pq.read_table(path)), path)


def to_v21(src: Path, dst: Path) -> Path:
    """The v3 dataset ``src`` in LeRobot v2.1's layout: info.json with v2.1 path templates and total_chunks,
    meta/episodes.jsonl + tasks.jsonl, one data parquet and one MP4 per episode (cut from the v3 file at
    from/to_timestamp and re-encoded), timestamps from 0 per episode as v2.1 wrote them."""
    from vlaflow.media import ClipEncoder, PyAVDecoder, probe

    info = json.loads((src / "meta/info.json").read_text())
    eps = pq.read_table(next((src / "meta/episodes").glob("*/*.parquet"))).to_pylist()
    tasks = pq.read_table(src / "meta/tasks.parquet").to_pandas()
    data = pq.read_table(next((src / "data").glob("*/*.parquet")))
    (dst / "meta").mkdir(parents=True)
    with open(dst / "meta/tasks.jsonl", "w") as f:
        for task, row in tasks.iterrows():
            f.write(json.dumps({"task_index": int(row["task_index"]), "task": task}) + "\n")
    with open(dst / "meta/episodes.jsonl", "w") as f:
        for e in eps:
            f.write(json.dumps({"episode_index": e["episode_index"], "tasks": e["tasks"], "length": e["length"]}) + "\n")
    video_keys = [k for k, ft in info["features"].items() if ft["dtype"] == "video"]
    for e in eps:
        idx = e["episode_index"]
        rows = data.filter(pa.compute.equal(data["episode_index"], idx))
        rel = V21_DATA.format(episode_chunk=0, episode_index=idx)
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows, dst / rel)
        for key in video_keys:
            path = src / info["video_path"].format(video_key=key, chunk_index=e[f"videos/{key}/chunk_index"],
                                                   file_index=e[f"videos/{key}/file_index"])
            first = int(round(e[f"videos/{key}/from_timestamp"] * info["fps"]))
            dec = PyAVDecoder(str(path), probe(str(path)))
            enc = ClipEncoder(Fraction(info["fps"]), "h264", 2, 10)
            for _, rgb in dec.frames(range(first, first + e["length"])):
                enc.add(rgb)
            dec.close()
            out = dst / V21_VIDEO.format(episode_chunk=0, video_key=key, episode_index=idx)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(enc.finish())
    info.update(codebase_version="v2.1", data_path=V21_DATA, video_path=V21_VIDEO if video_keys else None,
                total_chunks=1, total_videos=len(eps) * len(video_keys))
    for k in ("data_files_size_in_mb", "video_files_size_in_mb"):
        info.pop(k, None)
    (dst / "meta/info.json").write_text(json.dumps(info, indent=2))
    return dst


def means(frames) -> np.ndarray:
    return np.asarray([float(np.asarray(f).mean()) for f in frames])


@pytest.fixture(scope="session")
def lr():
    """The helpers above, for tests (conftest modules are not importable by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(fixture=fixture, expected=expected, copy_fixture=copy_fixture, convert=convert,
                           edit_episodes=edit_episodes, edit_data=edit_data, to_v21=to_v21, means=means)
