"""A LeRobot dataset folder's metadata, v3.0 and v2.x, read once on the driver into plain data.

v3.0 (``codebase_version`` "v3.0"): ``meta/info.json``, ``meta/tasks.parquet`` (task strings as the pandas
index, ``task_index`` column), ``meta/episodes/chunk-*/file-*.parquet`` (one row per episode: ``tasks``,
``length``, ``data/{chunk,file}_index``, ``dataset_{from,to}_index``, per camera
``videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp}``); data files hold several episodes,
videos several episodes one after another.

v2.1 / v2.0: ``meta/tasks.jsonl`` ({task_index, task}), ``meta/episodes.jsonl`` ({episode_index, tasks,
length}); one data parquet and one MP4 per episode and camera, under ``chunk-{episode_chunk}`` folders
(``episode_chunk = episode_index // chunks_size``).

Path templates come from ``info.json`` (data) and are filled with known placeholders only; every path is
checked to stay inside the dataset folder.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pyarrow.parquet as pq

from vlaflow.schemas import InputError
from vlaflow.schemas.names import is_safe_rel

INFO = "meta/info.json"
V3_TASKS = "meta/tasks.parquet"
V3_EPISODES_DIR = "meta/episodes"
V2_TASKS = "meta/tasks.jsonl"
V2_EPISODES = "meta/episodes.jsonl"
# Columns LeRobot adds to every frame; everything else in ``features`` is the robot's.
DEFAULT_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
VERSIONS = ("v2.0", "v2.1", "v3.0")
_PLACEHOLDER = re.compile(r"\{(\w+)(?::(0?\d*d))?\}")


@dataclass(frozen=True)
class VideoRef:
    key: str  # the feature, e.g. observation.images.top
    path: str  # relative to the dataset root
    from_s: float  # where the episode starts in the file (v3: several episodes per file)
    to_s: float


@dataclass(frozen=True)
class EpisodeMeta:
    """One episode as the metadata lists it; a work unit's payload is a tuple of them."""

    index: int
    length: int
    tasks: tuple[str, ...]
    data_path: str  # relative to the root
    from_index: int | None = None  # v3: global row range of the episode
    to_index: int | None = None
    videos: tuple[VideoRef, ...] = ()
    problem: str = ""  # set when the listing itself is unusable: read rejects the episode with this reason


@dataclass
class LeRobotMeta:
    root: Path
    info: dict
    version: str
    fps: Fraction
    robot_type: str
    features: dict  # name -> {dtype, shape, names}
    tasks: dict[int, str]
    episodes: list[EpisodeMeta]
    splits: dict[str, tuple[int, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") in ("image", "video")]

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    @property
    def numeric_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if k not in DEFAULT_FEATURES
                and f.get("dtype") not in ("image", "video", "string")]

    def names(self, key: str) -> list[str]:
        """The per-value names of a feature (a list, or v2's ``{"motors": [...]}``), flattened; [] if none."""
        return flat_names(self.features.get(key, {}).get("names"))

    def split_of(self, episode: int) -> str:
        for name, (a, b) in self.splits.items():
            if a <= episode < b:
                return name
        return "train"


def flat_names(names) -> list[str]:
    if isinstance(names, dict):
        out: list[str] = []
        for v in names.values():
            out.extend(flat_names(v))
        return out
    if isinstance(names, (list, tuple)):
        out = []
        for v in names:
            out.extend(flat_names(v) if isinstance(v, (list, tuple, dict)) else [str(v)])
        return out
    return []


def looks_like_lerobot(root: str | Path) -> bool:
    p = Path(root) / INFO
    if not p.is_file():
        return False
    try:
        info = json.loads(p.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "features" in info and "fps" in info


def fill(template: str, where: str, **values) -> str:
    """``data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet`` with the values; only known names and
    zero-padded integer formats are filled (a template from data is never run as a format string)."""
    def sub(m: re.Match) -> str:
        name, fmt = m.group(1), m.group(2) or ""
        if name not in values:
            raise InputError(f"{where}: path template {template!r} uses unknown field {{{name}}}")
        v = values[name]
        return format(v, fmt) if fmt and isinstance(v, int) else str(v)

    rel = _PLACEHOLDER.sub(sub, template)
    if "{" in rel or "}" in rel or not is_safe_rel(rel):
        raise InputError(f"{where}: path template {template!r} gives {rel!r}, not a path inside the dataset")
    return rel


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: missing {what} (not a LeRobot dataset, or an incomplete download)") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable {what} ({type(err).__name__}: {str(err)[:120]})") from None


def _read_jsonl(path: Path, what: str) -> list[dict]:
    if not path.is_file():
        raise InputError(f"{path}: missing {what} (an incomplete download?)")
    rows = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise InputError(f"{path}:{i + 1}: not JSON ({err})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{i + 1}: expected an object per line")
        rows.append(row)
    return rows


def _parse_splits(splits, where: str) -> dict[str, tuple[int, int]]:
    out = {}
    for name, rng in (splits or {}).items():
        a, sep, b = str(rng).partition(":")
        try:
            out[str(name)] = (int(a), int(b))
        except ValueError:
            raise InputError(f"{where}: splits.{name}: expected 'start:stop', got {rng!r}") from None
    return out


def read_meta(root: str | Path) -> LeRobotMeta:
    """Read and check the metadata; a missing or malformed meta file is a one-line ``InputError``."""
    root = Path(root)
    info = _read_json(root / INFO, "meta/info.json")
    where = str(root / INFO)
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict):
        raise InputError(f"{where}: no `features` mapping")
    version = str(info.get("codebase_version", ""))
    if version not in VERSIONS:
        raise InputError(f"{where}: codebase_version {version!r} is not one this converter reads ({VERSIONS}); "
                         "v1.x datasets: convert with LeRobot's own scripts first")
    try:
        fps = Fraction(info["fps"]).limit_denominator(1001)
        if fps <= 0:
            raise ValueError(fps)
    except (KeyError, ValueError, TypeError):
        raise InputError(f"{where}: fps missing or not a positive number ({info.get('fps')!r})") from None
    for key, f in info["features"].items():
        if not isinstance(f, dict) or "dtype" not in f:
            raise InputError(f"{where}: features.{key}: needs a dtype")
    if not isinstance(info.get("data_path"), str):
        raise InputError(f"{where}: data_path template missing")
    meta = LeRobotMeta(root=root, info=info, version=version, fps=fps, robot_type=str(info.get("robot_type") or ""),
                       features=info["features"], tasks={}, episodes=[],
                       splits=_parse_splits(info.get("splits"), where))
    if version == "v3.0":
        _read_v3(meta)
    else:
        _read_v2(meta)
    if not meta.episodes:
        raise InputError(f"{root}: the metadata lists no episodes")
    return meta


def _read_tasks_v3(root: Path) -> dict[int, str]:
    path = root / V3_TASKS
    if not path.is_file():
        raise InputError(f"{path}: missing meta/tasks.parquet (an incomplete download?)")
    try:
        t = pq.read_table(path)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable ({type(err).__name__}: {str(err)[:120]})") from None
    cols = t.column_names
    # LeRobot writes a pandas frame indexed by the task string: the index is a column named in the pandas metadata
    text_col = next((c for c in ("task", "__index_level_0__") if c in cols), None)
    if text_col is None:
        pandas_meta = (t.schema.metadata or {}).get(b"pandas")
        idx = json.loads(pandas_meta).get("index_columns", []) if pandas_meta else []
        text_col = next((c for c in idx if isinstance(c, str) and c in cols), None)
    if text_col is None or "task_index" not in cols:
        raise InputError(f"{path}: expected the task strings (index) and a task_index column, found {cols}")
    return {int(i): str(s) for i, s in zip(t["task_index"].to_pylist(), t[text_col].to_pylist())}


def _read_v3(meta: LeRobotMeta) -> None:
    root, info = meta.root, meta.info
    meta.tasks = _read_tasks_v3(root)
    files = sorted((root / V3_EPISODES_DIR).glob("chunk-*/file-*.parquet"))
    if not files:
        raise InputError(f"{root / V3_EPISODES_DIR}: no episode metadata files (chunk-*/file-*.parquet)")
    video_tpl = info.get("video_path")
    for path in files:
        try:
            schema = pq.read_schema(path)
            keep = [c for c in schema.names if not c.startswith(("stats/", "meta/"))]
            rows = pq.read_table(path, columns=keep).to_pylist()
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: unreadable episode metadata ({type(err).__name__}: {str(err)[:120]})") from None
        for row in rows:
            meta.episodes.append(_episode_v3(meta, row, video_tpl, path))
    meta.episodes.sort(key=lambda e: e.index)


def _episode_v3(meta: LeRobotMeta, row: dict, video_tpl, where: Path) -> EpisodeMeta:
    idx = row.get("episode_index")
    if not isinstance(idx, int):
        raise InputError(f"{where}: an episode row without episode_index")
    tasks = tuple(str(t) for t in (row.get("tasks") or []))
    try:
        length = int(row["length"])
        data = fill(meta.info["data_path"], str(where), chunk_index=int(row["data/chunk_index"]),
                    file_index=int(row["data/file_index"]), episode_index=idx)
    except (KeyError, TypeError, ValueError) as err:
        return EpisodeMeta(idx, 0, tasks, "", problem=f"episode {idx}: metadata lacks {err}")
    videos = []
    for key in meta.video_keys:
        try:
            rel = fill(video_tpl or "", str(where), video_key=key, chunk_index=int(row[f"videos/{key}/chunk_index"]),
                       file_index=int(row[f"videos/{key}/file_index"]), episode_index=idx)
            videos.append(VideoRef(key, rel, float(row[f"videos/{key}/from_timestamp"]),
                                   float(row[f"videos/{key}/to_timestamp"])))
        except (KeyError, TypeError, ValueError) as err:
            return EpisodeMeta(idx, length, tasks, data, problem=f"episode {idx}: no video metadata for {key} ({err})")
    fr, to = row.get("dataset_from_index"), row.get("dataset_to_index")
    return EpisodeMeta(idx, length, tasks, data, fr if isinstance(fr, int) else None,
                       to if isinstance(to, int) else None, tuple(videos))


def _read_v2(meta: LeRobotMeta) -> None:
    root, info = meta.root, meta.info
    meta.tasks = {int(r["task_index"]): str(r["task"]) for r in _read_jsonl(root / V2_TASKS, "meta/tasks.jsonl")
                  if "task_index" in r and "task" in r}
    chunks = int(info.get("chunks_size") or 1000)
    video_tpl = info.get("video_path")
    for r in _read_jsonl(root / V2_EPISODES, "meta/episodes.jsonl"):
        idx = r.get("episode_index")
        if not isinstance(idx, int):
            raise InputError(f"{root / V2_EPISODES}: a line without episode_index")
        tasks = tuple(str(t) for t in (r.get("tasks") or []))
        values = dict(episode_chunk=idx // chunks, episode_index=idx)
        data = fill(info["data_path"], str(root / INFO), **values)
        if not isinstance(r.get("length"), int):
            meta.episodes.append(EpisodeMeta(idx, 0, tasks, data, problem=f"episode {idx}: no length"))
            continue
        length = r["length"]
        videos = tuple(VideoRef(k, fill(video_tpl or "", str(root / INFO), video_key=k, **values), 0.0,
                                length / float(meta.fps)) for k in meta.video_keys)
        meta.episodes.append(EpisodeMeta(idx, length, tasks, data, videos=videos))
    meta.episodes.sort(key=lambda e: e.index)
