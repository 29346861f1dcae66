"""``video_trajectory``: any video + a per-frame point-track file → frames with trajectory targets.

The open plugin for a user's own capture rig. Input: a folder of ``<name>.json`` (or ``<name>.parquet``)
track files, each beside its video (``<name>.mp4`` or the file's ``"video"`` field), or one track file.

JSON track file::

    {"video": "clip.mp4", "instruction": "put the cup on the shelf",
     "space": "pixel" | "camera" | "world",          # what the coordinates are
     "intrinsics": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],      # projects 3D points (optional)
     "camera_to_world": [[4x4], ...],                 # per video frame; required for "world"
     "camera_convention": "opencv" | "arkit",          # of camera_to_world (default opencv)
     "frame_index": [0, 1, 2, ...],                    # video frame of each entry (default 0..N-1)
     "points": {"left_wrist": [[x, y], null, ...], "cup": [[x, y], ...]},
     "confidence": {"cup": [0.9, ...]}}               # optional, per point and entry

Parquet track file: long format ``frame_index, point, x, y[, z][, confidence]``, the header fields above
as JSON in the schema metadata key ``vlaflow_trajectory``.

With ``--opt hands=mediapipe`` (optional extra ``vlaflow[hands]``), MP4s without a track file are taken too
and both hands' wrists and fingertips are tracked in 2D on every sampled frame (``hands2d.py``);
``--opt instruction=`` gives such videos an instruction.

Points named ``left_wrist`` / ``right_wrist`` fill the hand wrist slots; up to 8 others fill ``points.*``
in first-seen order (names per episode in the episodes table's ``extra.points``). ``camera`` points
without ``camera_to_world`` assume a static camera. Pixel points fill only ``*_uv``.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlaflow.media import open_decoder, probe, sample_indices
from vlaflow.schemas import DatasetInfo, Episode, EpisodeError, FeatureMismatch, InputError
from vlaflow.schemas.slots import TRAJ_POINTS
from vlaflow.schemas.names import natural_key, safe_component

from ..base import Converter, ConverterOptions, ReadItem, Rejected, WorkUnit, option
from .errors import MissingFrames, MissingIntrinsics, NonFinitePose, UnsafePath
from .files import episode_key, local_root
from .trajectory import Observations, build_chunks, cv_camera_from_world, pad_horizon
from .video import HandOptions, store_frames

EMBODIMENT = "video_traces"
TASK_FAMILY = "trajectory"
SPACES = ("pixel", "camera", "world")
HAND_POINTS = {"left_wrist": "left_hand", "right_wrist": "right_hand"}
TRACK_EXTS = (".json", ".parquet")


class BadTrackFile(FeatureMismatch):
    """A track file that does not follow the documented layout (named field and reason in the message)."""


def load_tracks(path: Path) -> dict:
    """A track file → the JSON layout (Parquet long format pivoted into it)."""
    if path.suffix == ".json":
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise BadTrackFile(f"{path.name}: not readable JSON ({err})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("points"), dict):
            raise BadTrackFile(f"{path.name}: needs an object with a 'points' mapping")
        return doc
    import pyarrow.parquet as pq

    try:
        t = pq.read_table(path)
    except Exception as err:
        raise BadTrackFile(f"{path.name}: not readable Parquet ({type(err).__name__})") from None
    meta = (t.schema.metadata or {}).get(b"vlaflow_trajectory", b"{}")
    doc = json.loads(meta)
    need = {"frame_index", "point", "x", "y"} - set(t.column_names)
    if need:
        raise BadTrackFile(f"{path.name}: missing columns {sorted(need)}")
    if t["frame_index"].null_count or t["point"].null_count:
        raise BadTrackFile(f"{path.name}: null frame_index or point")
    cols = {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names}
    fi = cols["frame_index"].astype(np.int64)
    frames, frow = np.unique(fi, return_inverse=True)
    names, prow = np.unique(cols["point"].astype(str), return_inverse=True)
    order = list(dict.fromkeys(cols["point"].astype(str).tolist()))  # first-seen order, as in JSON
    dims = ("x", "y", "z") if "z" in cols else ("x", "y")
    grid = np.full((len(names), len(frames), len(dims)), np.nan)
    grid[prow, frow] = np.stack([np.asarray(cols[d], np.float64) for d in dims], 1)
    seen = np.zeros((len(names), len(frames)), bool)
    seen[prow, frow] = True
    where = {n: i for i, n in enumerate(names.tolist())}
    points = {n: [g.tolist() if ok else None for g, ok in zip(grid[where[n]], seen[where[n]])] for n in order}
    conf: dict = {}
    if "confidence" in cols:
        cgrid = np.zeros((len(names), len(frames)))
        cgrid[prow, frow] = np.asarray(cols["confidence"], np.float64)
        conf = {n: cgrid[where[n]].tolist() for n in order}
    doc.update(frame_index=frames.tolist(), points=points, **({"confidence": conf} if conf else {}))
    return doc


class VideoTrajectoryConverter(Converter):
    name = "video_trajectory"
    version = "1.0"
    description = ("any MP4 + a JSON/Parquet file of per-frame 2D or 3D points (hands or objects): frames with "
                   "future point traces in the current camera frame / image")

    @dataclass(frozen=True)
    class Options(HandOptions):
        min_confidence: float = option(0.5, "points (and tracked hand joints) below this confidence are masked")
        instruction: str = option("", "instruction of videos without a track file (with hands=mediapipe)")
        dataset: str | None = option(None, "dataset name (default video_trajectory)")

    @classmethod
    def sniff(cls, input_path: str) -> bool:
        try:
            tracks = _scan(local_root(input_path, "video_trajectory"), limit=1)
            return bool(tracks) and "points" in load_tracks(tracks[0])
        except Exception:
            return False

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        super().__init__(input_path, options)
        self.root = local_root(input_path, "video_trajectory")
        self.files = _scan(self.root, videos=self.opts.hands == "mediapipe")
        if not self.files:
            raise InputError(f"{input_path}: no track files (.json with a 'points' mapping, or .parquet)")
        self.dataset = safe_component(self.opts.dataset or "video_trajectory")
        self._warnings: list[str] = []

    def warnings(self) -> list[str]:
        return list(self._warnings)

    def datasets(self) -> list[DatasetInfo]:
        return [DatasetInfo(
            name=self.dataset, task_family=TASK_FAMILY, embodiment=EMBODIMENT, fps=self.opts.rate_hz,
            source_uri=str(self.input_path), converter=self.name, converter_version=self.version,
            action_frame="current camera, OpenCV", control_mode="point_trajectory", cameras={"primary": "video"},
            notes=["frames sampled on the video's pts; a sampled frame without an entry in the track file has "
                   "its points masked", "point names per episode: episodes table extra.points"],
            trajectory={"frame": "camera_opencv_current_row", "horizon": self.opts.horizon, "stride": 1,
                        "uv": "pixel / image size", "points": "per episode (extra.points)"},
        )]

    def work_units(self, target_bytes: int) -> list[WorkUnit]:
        return [WorkUnit(str(p), self.options.split or "train", 0, 1, max(p.stat().st_size, 1), file_index=i)
                for i, p in enumerate(self.files)]

    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        p = Path(unit.source)
        key = episode_key(self.root, p, self.dataset)
        try:
            yield self._episode(p, key, unit)
        except EpisodeError as err:
            yield Rejected.from_error(key, err, unit.source)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
            # a track file of the right kind but the wrong shape somewhere (ragged lists, strings for numbers)
            bad = BadTrackFile(f"{p.name}: malformed track file ({type(err).__name__}: {str(err)[:200]})")
            yield Rejected.from_error(key, bad, unit.source)

    def _video_for(self, p: Path, doc: dict) -> Path:
        name = doc.get("video") or p.with_suffix(".mp4").name
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith(".") or ".." in name:
            raise UnsafePath(f"{p.name}: video {str(name)[:80]!r} must be a plain file name beside the track file")
        v = p.parent / name
        if not v.exists():
            raise MissingFrames(f"{p.name}: video {name} not found")
        return v

    def _episode(self, p: Path, key: str, unit: WorkUnit) -> Episode:
        if p.suffix == ".mp4":  # a bare video: hands come from the detector (--opt hands=mediapipe)
            doc = {"points": {}, "space": "pixel", "video": p.name,
                   "instruction": self.opts.instruction}
        else:
            doc = load_tracks(p)
        space = doc.get("space", "pixel")
        if space not in SPACES:
            raise BadTrackFile(f"{p.name}: space must be one of {SPACES}, got {space!r}")
        video = self._video_for(p, doc)
        index = probe(str(video))
        nv = index.num_frames
        names = list(doc["points"])
        fidx = np.asarray(doc.get("frame_index", range(len(doc["points"][names[0]]) if names else 0)), np.int64)
        if len(fidx) and (fidx.min() < 0 or fidx.max() >= nv):
            raise MissingFrames(f"{p.name}: track frame {int(fidx.max())} outside the video's {nv} frames")
        dim = 2 if space == "pixel" else 3
        K = np.asarray(doc["intrinsics"], np.float64) if doc.get("intrinsics") is not None else None
        if K is not None and (K.shape != (3, 3) or not np.isfinite(K).all()):
            raise MissingIntrinsics(f"{p.name}: intrinsics must be a finite 3x3 matrix")
        if space == "world" and doc.get("camera_to_world") is None:
            raise BadTrackFile(f"{p.name}: space 'world' needs camera_to_world per video frame")
        frames = sample_indices(index.timestamps_ns, self.opts.rate_hz)
        s = len(frames)
        where = {int(f): i for i, f in enumerate(fidx)}
        rows = np.array([where.get(int(f), -1) for f in frames])
        have = rows >= 0
        posed = doc.get("camera_to_world") is not None
        if posed:
            c2w = np.asarray(doc["camera_to_world"], np.float64)
            if c2w.shape != (len(fidx), 4, 4):
                raise BadTrackFile(f"{p.name}: camera_to_world has shape {c2w.shape}, expected ({len(fidx)}, 4, 4)")
            cam = np.where(have[:, None, None], c2w[np.maximum(rows, 0)], np.eye(4))
            if not np.isfinite(cam).all():
                raise NonFinitePose(f"{p.name}: camera_to_world is not finite")
            cfw = cv_camera_from_world(cam, str(doc.get("camera_convention", "opencv")))
            world_from_cv = np.linalg.inv(cfw)
        else:  # no poses: a static camera, camera frame = world frame
            cfw = np.broadcast_to(np.eye(4), (s, 4, 4))
        others = [n for n in names if n not in HAND_POINTS]
        if len(others) > TRAJ_POINTS:
            self._warnings.append(f"{key}: {len(others)} free points, only the first {TRAJ_POINTS} are kept")
            others = others[:TRAJ_POINTS]
        obs = Observations()
        conf = doc.get("confidence") or {}

        def series(name):
            vals = doc["points"][name]
            if len(vals) != len(fidx):
                raise BadTrackFile(f"{p.name}: point {name!r} has {len(vals)} entries for {len(fidx)} frames")
            arr = np.full((len(fidx), dim), np.nan)
            for i, v in enumerate(vals):
                if v is not None:
                    if len(v) != dim:
                        raise BadTrackFile(f"{p.name}: point {name!r} entry {i} has {len(v)} values, space {space} "
                                           f"needs {dim}")
                    arr[i] = v
            ok = np.isfinite(arr).all(1)
            if name in conf:
                c = np.asarray(conf[name], np.float64)
                if c.shape != (len(fidx),):
                    raise BadTrackFile(f"{p.name}: confidence of {name!r} has {c.size} entries for {len(fidx)} frames")
                ok &= c >= self.opts.min_confidence
            return np.where(have[:, None], arr[np.maximum(rows, 0)], np.nan), have & ok[np.maximum(rows, 0)]

        def add(name, pos_slot, uv_slot, n_slots, slot_i):
            vals, ok = series(name)
            if space == "pixel":
                uv = vals / np.array([index.width, index.height])
                obs.image_points.setdefault(uv_slot, np.zeros((s, n_slots, 2)))[:, slot_i] = np.nan_to_num(uv)
                obs.image_valid.setdefault(uv_slot, np.zeros((s, n_slots), bool))[:, slot_i] = ok
            else:
                if space == "camera" and posed:  # each frame's own camera → world, so targets follow the motion
                    vals = np.einsum("sab,sb->sa", world_from_cv[:, :3, :3], vals) + world_from_cv[:, :3, 3]
                obs.positions.setdefault(pos_slot, np.zeros((s, n_slots, 3)))[:, slot_i] = np.nan_to_num(vals)
                obs.position_valid.setdefault(pos_slot, np.zeros((s, n_slots), bool))[:, slot_i] = ok

        for name, hand in HAND_POINTS.items():
            if name in doc["points"]:
                add(name, f"{hand}.wrist_pos", f"{hand}.wrist_uv", 1, 0)
        for i, name in enumerate(others):
            add(name, "points.xyz", "points.uv", TRAJ_POINTS, i)
        decoder = open_decoder(self.opts.decoder, str(video), index=index)
        tracker = None
        if self.opts.hands == "mediapipe":
            from .hands2d import MediaPipeHands, TapDecoder

            tracker = MediaPipeHands(mirrored=self.opts.mirrored, min_confidence=self.opts.min_confidence)
            decoder = TapDecoder(decoder, tracker.add)
        try:
            images, clip = store_frames(decoder, frames, self.frame_storage, self.opts.rate_hz)
        finally:
            decoder.close()
            if tracker is not None:
                tracker.close()
        if tracker is not None:
            pts, ok = tracker.image_points()
            for uv_slot in pts:
                if uv_slot not in obs.image_points and uv_slot.replace("_uv", "_pos") not in obs.positions:
                    obs.image_points[uv_slot], obs.image_valid[uv_slot] = pts[uv_slot], ok[uv_slot]
        chunk, cmask = build_chunks(obs, cfw, K, (index.width, index.height), self.opts.horizon,
                                    camera_valid=have if posed else None)
        traj, tmask = pad_horizon(chunk, cmask)
        return self.make_episode(  # no action or state: the targets are the trajectory
            key, timestamp_ns=index.timestamps_ns[frames], instruction=str(doc.get("instruction") or ""),
            language=str(doc.get("language", "en")), images={"primary": images} if images is not None else {},
            videos={"primary": clip} if clip is not None else {}, split=unit.split, source_file=str(p), source_index=0,
            trajectory=traj, trajectory_mask=tmask,
            extra={"points": others, "hand_points": [n for n in HAND_POINTS if n in doc["points"]], "space": space,
                   "hand_tracker": "mediapipe==0.10.14" if tracker is not None else None,
                   "video": video.name, "video_frames": frames.tolist(), "image_size": [index.width, index.height],
                   "intrinsic": K.tolist() if K is not None else None})


def _scan(p: Path, limit: int | None = None, videos: bool = False) -> list[Path]:
    """Track files (and, with ``videos``, MP4s that have none), in natural order."""
    if p.is_file():
        return [p] if p.suffix in TRACK_EXTS or (videos and p.suffix == ".mp4") else []
    out = []
    for q in sorted((x for x in p.rglob("*") if x.is_file() and (x.suffix in TRACK_EXTS or (videos and x.suffix == ".mp4"))),
                    key=lambda x: natural_key(str(x.relative_to(p)))):
        if q.suffix == ".mp4" and any(q.with_suffix(e).exists() for e in TRACK_EXTS):
            continue  # its track file is the episode
        if q.suffix == ".json" and not _is_track_json(q):
            continue
        out.append(q)
        if limit and len(out) >= limit:
            break
    return out


def _is_track_json(q: Path) -> bool:
    """A track file: parses to an object with ``points``, or sits beside its video (then a parse error is its
    episode's quarantine reason, not a silent skip)."""
    if q.with_suffix(".mp4").exists():
        return True
    try:
        doc = json.loads(q.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(doc, dict) and "points" in doc
