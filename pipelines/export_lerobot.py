"""``vlaflow export lerobot``: one dataset of a corpus written in LeRobot's v3.0 layout, without LeRobot.

LeRobot has one schema per dataset, so one vlaflow dataset (one embodiment) becomes one LeRobot dataset:

- ``action`` / ``observation.state``: the padded vectors sliced to the values the dataset ever fills (the
  union of its masks, in slot order: the embodiment's own slots), named by slot value (``arm.joint_pos[3]``),
  which the ``lerobot`` converter maps straight back; a dataset without slots (generic embodiment) exports its
  raw source values (``action_raw`` / ``state_raw``, named by ``action_raw_keys``) instead;
- cameras: ``observation.images.<role>``, ``image`` features (the stored image bytes, never re-encoded; frames
  stored as video are decoded and written as PNG) or, with ``video``, one H.264 MP4 per camera and data file,
  the episodes one after another (``from_timestamp`` / ``to_timestamp`` per episode);
- the instruction of each row is its task (``meta/tasks.parquet``); a row's ``timestamp`` is
  ``frame_index / fps``;
- ``meta/stats.json``: min, max, mean, std, count and the q01/q10/q50/q90/q99 LeRobot reads, exact, per feature
  (images: per channel in [0, 1], exact over the pixels of up to 8 frames per episode, as LeRobot samples them);
- ``meta/vlaflow/embodiment.yaml``: the embodiment spec, so the round trip knows a custom robot.

Data files roll over past ``DATA_FILE_MB`` of Arrow data or when a camera's MP4 passes ``VIDEO_FILE_MB`` (an
MP4 is built in memory until its file closes), one row group per episode, never an episode across files; the
videos of a data file share its index. Per-step masks, ``action_valid`` and the raw source values have no LeRobot field and are not written.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from vlaflow.converters.lerobot.converter import EXPORT_EMBODIMENT
from vlaflow.media import ClipEncoder, decode_rgb, encode_image
from vlaflow.schemas import ACTION, STATE, Col, EpCol, InputError
from vlaflow.schemas.conventions import parse_fps

from .corpus import Corpus

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
IMAGE_STAT_FRAMES = 8  # frames per episode sampled for image statistics
MODES = ("images", "video")


@dataclass
class ExportResult:
    path: str
    episodes: int
    frames: int
    tasks: int
    cameras: dict[str, str]  # LeRobot key -> dtype
    action_names: list[str]
    state_names: list[str]
    files: int = 0
    warnings: list[str] = field(default_factory=list)


def _paths(chunk_file: int) -> tuple[int, int]:
    return chunk_file // CHUNKS_SIZE, chunk_file % CHUNKS_SIZE


def _fmt(template: str, n: int, **kw) -> str:
    c, f = _paths(n)
    return template.format(chunk_index=c, file_index=f, **kw)


def _used_positions(corpus: Corpus, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Value positions any row of the dataset fills (union of its action / state masks)."""
    amask, smask = np.zeros(ACTION.width, bool), np.zeros(STATE.width, bool)
    for root, shard in corpus.shards(dataset):
        with root.out.fs.open_input_file(root.out.path(shard.path)) as f:
            t = pq.read_table(f, columns=[Col.ACTION_MASK, Col.STATE_MASK])
        for col, acc, width in ((Col.ACTION_MASK, amask, ACTION.width), (Col.STATE_MASK, smask, STATE.width)):
            flat = pc.list_flatten(t[col].combine_chunks()).to_numpy(zero_copy_only=False)
            acc |= flat.reshape(-1, width).any(axis=0)
    return np.nonzero(amask)[0], np.nonzero(smask)[0]


class _Stats:
    """Exact statistics: numbers over every row; images per channel from 256-bin histograms of the sampled
    frames' pixels (exact for 8-bit values, constant memory), in [0, 1] as LeRobot keeps them."""

    def __init__(self):
        self.parts: dict[str, list[np.ndarray]] = {}
        self.hists: dict[str, np.ndarray] = {}  # image key -> [3, 256] pixel counts
        self.frames: dict[str, int] = {}  # image key -> frames sampled (LeRobot's image count)

    def add(self, key: str, values: np.ndarray) -> None:
        self.parts.setdefault(key, []).append(np.asarray(values, np.float32))

    def add_image(self, key: str, rgb: np.ndarray) -> None:
        h = self.hists.setdefault(key, np.zeros((3, 256), np.int64))
        for c in range(3):
            h[c] += np.bincount(rgb[..., c].reshape(-1), minlength=256)[:256]
        self.frames[key] = self.frames.get(key, 0) + 1

    def to_json(self) -> dict:
        out = {}
        for key, parts in self.parts.items():
            x = np.concatenate(parts).astype(np.float64)
            x = x.reshape(len(x), -1)
            d = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
            for q in QUANTILES:
                d[f"q{int(round(q * 100)):02d}"] = np.quantile(x, q, axis=0)
            out[key] = {k: v.reshape(-1).tolist() for k, v in d.items()} | {"count": [len(x)]}
        v = np.arange(256) / 255.0
        for key, h in self.hists.items():
            n = h.sum(axis=1, keepdims=True).astype(np.float64)
            mean = (h * v).sum(axis=1) / n[:, 0]
            std = np.sqrt(np.maximum((h * v ** 2).sum(axis=1) / n[:, 0] - mean ** 2, 0.0))
            cdf = np.cumsum(h, axis=1) / n
            d = {"min": np.asarray([v[np.nonzero(r)[0][0]] for r in h]),
                 "max": np.asarray([v[np.nonzero(r)[0][-1]] for r in h]), "mean": mean, "std": std}
            for q in QUANTILES:
                d[f"q{int(round(q * 100)):02d}"] = v[np.argmax(cdf >= q, axis=1)]
            out[key] = {k: val.reshape(3, 1, 1).tolist() for k, val in d.items()} | {"count": [self.frames[key]]}
        return out


class _Writer:
    """Data parquet files (one row group per episode) and, in video mode, one MP4 per camera per data file."""

    def __init__(self, root: Path, schema: pa.Schema, video_keys: list[str], fps, gop: int):
        self.root, self.schema, self.video_keys, self.fps, self.gop = root, schema, video_keys, fps, gop
        self.file = -1
        self.writer: pq.ParquetWriter | None = None
        self.bytes = 0
        self.encoders: dict[str, ClipEncoder] = {}
        self.video_frames = 0  # frames in the current video files
        self.video_shape: dict[str, tuple[int, int]] = {}
        self.files = 0

    def _open(self) -> None:
        self.close()
        self.file += 1
        path = self.root / _fmt(DATA_PATH, self.file)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")
        self.bytes = 0
        self.encoders = {k: ClipEncoder(self.fps, "h264", self.gop) for k in self.video_keys}
        self.video_frames = 0
        self.files += 1

    def write(self, table: pa.Table, frames: dict[str, list[np.ndarray]]) -> tuple[int, float]:
        """Append one episode; returns (data file index, the episode's start time in its video files)."""
        video_bytes = max((enc.buf.tell() for enc in self.encoders.values()), default=0)
        if self.writer is None or self.bytes > DATA_FILE_MB * 1e6 or video_bytes > VIDEO_FILE_MB * 1e6:
            self._open()
        self.writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.bytes += table.nbytes
        start = self.video_frames / float(self.fps)
        for key, rgbs in frames.items():
            sizes = {(rgb.shape[0] & ~1, rgb.shape[1] & ~1) for rgb in rgbs} | (
                {self.video_shape[key]} if key in self.video_shape else set())
            if len(sizes) > 1:
                raise InputError(f"{key}: frames of several sizes {sorted(sizes)}; a LeRobot video feature has one "
                                 "shape (export with --images)")
            enc = self.encoders[key]
            for rgb in rgbs:
                enc.add(rgb)
            if sizes:
                self.video_shape[key] = sizes.pop()
        self.video_frames += table.num_rows
        return self.file, start

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            for key, enc in self.encoders.items():
                data = enc.finish()
                path = self.root / _fmt(VIDEO_PATH, self.file, video_key=key)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                self.files += 1
            self.encoders = {}


def _feature_vec(names: list[str]) -> dict:
    return {"dtype": "float32", "shape": [len(names)], "names": names}


def export_lerobot(output: str, dataset: str, to: str, mode: str = "images", overwrite: bool = False,
                   gop: int = 2) -> ExportResult:
    """Write ``dataset`` of the corpus at ``output`` as a LeRobot v3.0 dataset folder ``to``."""
    if mode not in MODES:
        raise InputError(f"export mode must be one of {MODES}, got {mode!r}")
    corpus = Corpus.open(output)
    infos = corpus.datasets()
    if dataset not in infos:
        raise InputError(f"dataset {dataset!r} is not in {output}; it has {sorted(infos)}")
    info = infos[dataset]
    eps = corpus.episodes()
    eps = eps.filter(pc.equal(eps[EpCol.DATASET].cast(pa.string()), dataset))
    if eps.num_rows == 0:
        raise InputError(f"dataset {dataset!r} has no episodes to export")
    embodiments = sorted(set(eps[EpCol.EMBODIMENT].cast(pa.string()).to_pylist()))
    if len(embodiments) != 1:
        raise InputError(f"dataset {dataset!r} mixes embodiments {embodiments}; LeRobot holds one per dataset")
    emb = corpus.embodiments().get(embodiments[0])
    dest = Path(to)
    if dest.exists() and any(dest.iterdir()):
        if not overwrite:
            raise InputError(f"{to} exists and is not empty (pass --overwrite to replace it)")
        if not (dest / "meta" / "info.json").is_file():
            raise InputError(f"{to} is not a LeRobot dataset folder; refusing to delete it")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _write(corpus, output, dataset, info, eps, emb, dest, mode, gop)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)  # no half-written dataset (it would block a rerun's --overwrite)
        raise


def _write(corpus: Corpus, output: str, dataset: str, info: dict, eps: pa.Table, emb, dest: Path, mode: str,
           gop: int) -> ExportResult:
    fps = parse_fps(info["fps"])
    fps_out = int(fps) if fps.denominator == 1 else float(fps)
    apos, spos = _used_positions(corpus, dataset)
    anames = [ACTION.value_names()[i] for i in apos]
    snames = [STATE.value_names()[i] for i in spos]
    warnings: list[str] = []
    # A dataset without normalized slots (generic embodiment): its raw source values instead
    first = corpus.read_episode(eps[EpCol.EPISODE_ID][0].as_py(), columns=[Col.EPISODE_ID, Col.ACTION_RAW,
                                                                             Col.STATE_RAW])
    raw_width = {c: len(first[c][0].as_py() or []) for c in (Col.ACTION_RAW, Col.STATE_RAW)}
    use_raw = {Col.ACTION_RAW: not len(apos) and raw_width[Col.ACTION_RAW] > 0,
               Col.STATE_RAW: not len(spos) and raw_width[Col.STATE_RAW] > 0}
    if use_raw[Col.ACTION_RAW]:
        anames = _raw_names(info.get("action_raw_keys") or [], raw_width[Col.ACTION_RAW], "action_raw")
        warnings.append("no normalized action slots: `action` holds the raw source values (action_raw)")
    if use_raw[Col.STATE_RAW]:
        snames = _raw_names(info.get("state_raw_keys") or [], raw_width[Col.STATE_RAW], "state_raw")
        warnings.append("no normalized state slots: `observation.state` holds the raw source values (state_raw)")
    roles = [r for r in info.get("cameras", {}) if not r.startswith("depth")]
    skipped = [r for r in info.get("cameras", {}) if r.startswith("depth")]
    if skipped:
        warnings.append(f"depth cameras {skipped} are not exported (LeRobot images are 8-bit RGB)")
    keys = {r: f"observation.images.{r}" for r in roles}
    dtype = "video" if mode == "video" else "image"
    video_keys = [keys[r] for r in roles] if mode == "video" else []

    fields = [pa.field("action", pa.list_(pa.float32(), len(anames)))]
    if snames:
        fields.append(pa.field("observation.state", pa.list_(pa.float32(), len(snames))))
    if mode == "images":
        fields += [pa.field(keys[r], pa.struct([("bytes", pa.binary()), ("path", pa.string())])) for r in roles]
    fields += [pa.field("timestamp", pa.float32()), pa.field("frame_index", pa.int64()),
               pa.field("episode_index", pa.int64()), pa.field("index", pa.int64()), pa.field("task_index", pa.int64())]
    schema = pa.schema(fields)
    writer = _Writer(dest, schema, video_keys, fps, gop)
    stats = _Stats()
    tasks: dict[str, int] = {}
    rows_meta: list[dict] = []
    shapes: dict[str, tuple[int, int]] = {}
    index = 0
    cols = [Col.EPISODE_ID, Col.ACTION, Col.STATE, Col.ACTION_RAW, Col.STATE_RAW, Col.INSTRUCTION, Col.IMAGES,
            Col.VIDEOS]
    # Episodes grouped by split (first-seen order), so each split is one ``start:stop`` range of episode indices
    ids, splits = eps[EpCol.EPISODE_ID].to_pylist(), [str(s or "train") for s in eps[EpCol.SPLIT].to_pylist()]
    order = sorted(range(len(ids)), key=lambda i: list(dict.fromkeys(splits)).index(splits[i]))
    split_ranges: dict[str, list[int]] = {}
    for ep_i, eid in enumerate(ids[i] for i in order):
        split = splits[order[ep_i]]
        split_ranges.setdefault(split, [ep_i, ep_i])[1] = ep_i + 1
        t = corpus.read_episode(eid, columns=cols)
        n = t.num_rows
        action = _values(t, Col.ACTION_RAW, len(anames), eid) if use_raw[Col.ACTION_RAW] else \
            _values(t, Col.ACTION, ACTION.width, eid)[:, apos]
        state = _values(t, Col.STATE_RAW, len(snames), eid) if use_raw[Col.STATE_RAW] else \
            _values(t, Col.STATE, STATE.width, eid)[:, spos]
        instr = [str(s or "") for s in t[Col.INSTRUCTION].cast(pa.string()).to_pylist()]
        task_idx = [tasks.setdefault(s, len(tasks)) for s in instr]
        frame_index = np.arange(n, dtype=np.int64)
        ts = (frame_index / float(fps)).astype(np.float32)
        columns = {"action": pa.FixedSizeListArray.from_arrays(pa.array(action.astype(np.float32).reshape(-1)), len(anames))}
        if snames:
            columns["observation.state"] = pa.FixedSizeListArray.from_arrays(
                pa.array(state.astype(np.float32).reshape(-1)), len(snames))
        frames_for_video: dict[str, list[np.ndarray]] = {}
        sample = set(np.linspace(0, n - 1, min(n, IMAGE_STAT_FRAMES)).round().astype(int).tolist())
        for r in roles:
            encoded, rgbs = _camera(corpus, eid, r, t, need_rgb=mode == "video")
            key = keys[r]
            if mode == "images":
                columns[key] = pa.array([{"bytes": b, "path": None} for b in encoded], schema.field(key).type)
                for i in sorted(sample):
                    rgb = decode_rgb(encoded[i], f"{eid}: {r} step {i}")
                    shapes.setdefault(key, rgb.shape[:2])
                    stats.add_image(key, rgb)
            else:
                frames_for_video[key] = rgbs
                shapes.setdefault(key, rgbs[0].shape[:2])
                for i in sorted(sample):
                    stats.add_image(key, rgbs[i])
        columns.update(timestamp=pa.array(ts), frame_index=pa.array(frame_index),
                       episode_index=pa.array(np.full(n, ep_i, np.int64)),
                       index=pa.array(np.arange(index, index + n, dtype=np.int64)),
                       task_index=pa.array(np.asarray(task_idx, np.int64)))
        table = pa.table([columns[f.name] for f in schema], schema=schema)
        file_i, start = writer.write(table, frames_for_video)
        for name, arr in (("action", action), ("observation.state", state if snames else None),
                          ("timestamp", ts), ("frame_index", frame_index), ("episode_index", np.full(n, ep_i)),
                          ("index", np.arange(index, index + n)), ("task_index", np.asarray(task_idx))):
            if arr is not None:
                stats.add(name, np.asarray(arr).reshape(n, -1))
        c, f = _paths(file_i)
        row = {"episode_index": ep_i, "tasks": list(dict.fromkeys(instr)), "length": n,
               "data/chunk_index": c, "data/file_index": f, "dataset_from_index": index,
               "dataset_to_index": index + n}
        for key in video_keys:
            row.update({f"videos/{key}/chunk_index": c, f"videos/{key}/file_index": f,
                        f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": start + n / float(fps)})
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        rows_meta.append(row)
        index += n
    writer.close()
    if mode == "video":
        shapes.update(writer.video_shape)

    features = {"action": _feature_vec(anames)}
    if snames:
        features["observation.state"] = _feature_vec(snames)
    for r in roles:
        key = keys[r]
        h, w = shapes.get(key, (0, 0))
        ft = {"dtype": dtype, "shape": [int(h), int(w), 3], "names": ["height", "width", "channels"]}
        if mode == "video":
            ft["info"] = {"video.height": int(h), "video.width": int(w), "video.codec": "h264",
                          "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps_out,
                          "video.channels": 3, "has_audio": False}
        features[key] = ft
    features.update({"timestamp": {"dtype": "float32", "shape": [1], "names": None},
                     "frame_index": {"dtype": "int64", "shape": [1], "names": None},
                     "episode_index": {"dtype": "int64", "shape": [1], "names": None},
                     "index": {"dtype": "int64", "shape": [1], "names": None},
                     "task_index": {"dtype": "int64", "shape": [1], "names": None}})
    meta = dest / "meta"
    (meta / "vlaflow").mkdir(parents=True, exist_ok=True)
    info_json = {
        "codebase_version": CODEBASE_VERSION, "robot_type": emb.id, "total_episodes": len(rows_meta),
        "total_frames": index, "total_tasks": len(tasks), "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB, "fps": fps_out,
        "splits": {k: f"{a}:{b}" for k, (a, b) in split_ranges.items()}, "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if mode == "video" else None, "features": features,
    }
    (meta / "info.json").write_text(json.dumps(info_json, indent=4))
    (meta / "stats.json").write_text(json.dumps(stats.to_json(), indent=4))
    _write_tasks(meta / "tasks.parquet", tasks)
    ep_path = dest / EPISODES_PATH
    ep_path.parent.mkdir(parents=True, exist_ok=True)
    ep_table = pa.Table.from_pylist(rows_meta)
    pq.write_table(ep_table, str(ep_path))
    (dest / EXPORT_EMBODIMENT).write_text(yaml.safe_dump(emb.to_dict(), sort_keys=False))  # read back on import
    (meta / "vlaflow" / "source.json").write_text(json.dumps(
        {"corpus": output, "dataset": dataset, "embodiment": emb.id, "mode": mode,
         "action_positions": [int(i) for i in apos], "state_positions": [int(i) for i in spos]}, indent=2))
    return ExportResult(str(dest), len(rows_meta), index, len(tasks), {keys[r]: dtype for r in roles}, anames, snames,
                        writer.files, warnings)


def _camera(corpus: Corpus, eid: str, role: str, t: pa.Table, need_rgb: bool) -> tuple[list[bytes], list[np.ndarray]]:
    """One camera of an episode: its stored image bytes (kept as they are) and, when asked, RGB arrays.
    Frames stored as video are decoded and written as PNG."""
    images = t[Col.IMAGES].combine_chunks()
    cells = images.field(role).to_pylist() if role in t.schema.field(Col.IMAGES).type.names else [None] * t.num_rows
    if all(c and c.get("bytes") is not None for c in cells) and not need_rgb:
        return [c["bytes"] for c in cells], []
    rgbs = corpus.frames(eid, role)
    if need_rgb:
        return [], rgbs
    return [encode_image(rgb, "png") for rgb in rgbs], []


def _values(t: pa.Table, col: str, width: int, eid: str) -> np.ndarray:
    flat = pc.list_flatten(t[col].combine_chunks()).to_numpy(zero_copy_only=False)
    if flat.size != t.num_rows * width:
        raise InputError(f"{eid}: {col} is not {width} values per step; LeRobot needs one width per dataset")
    return np.asarray(flat).reshape(t.num_rows, width)


def _raw_names(keys: list[str], width: int, prefix: str) -> list[str]:
    return list(keys) if len(keys) == width else [f"{prefix}[{i}]" for i in range(width)]


def _write_tasks(path: Path, tasks: dict[str, int]) -> None:
    """LeRobot's layout: a pandas frame indexed by the task string, one ``task_index`` column."""
    import pandas as pd

    df = pd.DataFrame({"task_index": list(tasks.values())}, index=list(tasks.keys()))
    df.to_parquet(path)


__all__ = ["export_lerobot", "ExportResult", "MODES"]
