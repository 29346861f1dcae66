"""``egodex``: EgoDex-style episodes (``<i>.hdf5`` poses + ``<i>.mp4`` video) → rows with hand trajectories.

Input: a folder (searched recursively; EgoDex ships ``<part>/<task>/<i>.hdf5``) or one ``.hdf5``; local
files. Per sampled frame (``--opt rate_hz=10``, chosen on the video's pts, never its declared fps):
- ``images.primary`` (JPEG) or ``videos.primary`` (``--opt storage=mp4``);
- ``trajectory``: the next H samples (``--opt horizon=16``) of each wrist's position and rotation and the
  five fingertips, in the camera frame of this row (OpenCV), with projections through
  ``camera/intrinsic`` and an in-image mask; joints with ``confidences/<joint>`` below
  ``--opt min_confidence=0.5`` or NaN poses are masked;
- ``action``: the same for the next sample (``left_hand.*`` / ``right_hand.*``), invalid on the last row;
  ``state``: current wrist positions in this row's camera frame;
- ``state_raw``: the source's camera, leftHand and rightHand transforms (3×4 row-major each, ARKit world).
Pose frame i ↔ video frame i. A pose / video frame count difference up to ``--opt max_frame_mismatch=3``
is aligned by the shorter with a warning; more is quarantined (``pose_frame_mismatch``).
Rotation convention: ``wrist_rot`` = camera-from-world rotation × the joint's own ARKit rotation, i.e.
the joint's local axes expressed in the OpenCV camera frame.
"""
from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlaflow.media import open_decoder, probe, sample_indices
from vlaflow.schemas import ACTION, STATE, TRAJECTORY, DatasetInfo, Episode, EpisodeError, FeatureMismatch, InputError
from vlaflow.schemas.names import natural_key, safe_component

from ..base import Converter, ConverterOptions, ReadItem, Rejected, WorkUnit, option
from ..sim.hdf5 import attr_str, open_h5
from .errors import MissingFrames, MissingIntrinsics, NonFinitePose, PoseMismatch
from .files import episode_key, local_root
from .trajectory import Observations, build_chunks, cv_camera_from_world, pad_horizon
from .video import VideoOptions, store_frames

EMBODIMENT = "human_hands"
TASK_FAMILY = "egocentric"
HANDS = ("left", "right")
FINGERTIPS = ("ThumbTip", "IndexFingerTip", "MiddleFingerTip", "RingFingerTip", "LittleFingerTip")
_HAND_SLOTS = ("wrist_pos", "wrist_rot", "fingertips")
_FRAME_BYTES = 60_000  # planning estimate per stored 1080p JPEG frame


def _is_egodex(f) -> bool:
    return "transforms" in f and "camera" in f["transforms"] and "leftHand" in f["transforms"]


def pick_instruction(f) -> tuple[str, list[str]]:
    """EgoDex's rule: ``llm_type == "reversible"`` → the description ``which_llm_description`` names."""
    d1, d2, old = (attr_str(f, k) for k in ("llm_description", "llm_description2", "description"))
    every = [d for d in (d1, d2, old) if d]
    if attr_str(f, "llm_type") == "reversible" and attr_str(f, "which_llm_description") == "2" and d2:
        return d2, every
    return (d1 or old or d2), every


class EgoDexConverter(Converter):
    name = "egodex"
    version = "1.0"
    description = ("EgoDex-style <i>.hdf5 (ARKit hand/camera poses, intrinsics) + <i>.mp4: frames with future wrist "
                   "and fingertip trajectories in the current camera frame, 2D projections and masks")

    @dataclass(frozen=True)
    class Options(VideoOptions):
        min_confidence: float = option(0.5, "joints whose confidence is below it are masked")
        max_frame_mismatch: int = option(3, "pose / video frame counts may differ by this much (aligned by the shorter)")
        dataset: str | None = option(None, "dataset name (default egodex)")

    @classmethod
    def sniff(cls, input_path: str) -> bool:
        try:
            files = _scan(str(local_root(input_path, "egodex")), limit=1)
            if not files:
                return False
            f = open_h5(files[0])
            try:
                return _is_egodex(f)
            finally:
                f.close()
        except Exception:
            return False

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        super().__init__(input_path, options)
        self.root = local_root(input_path, "egodex")
        self.files = _scan(str(self.root))
        if not self.files:
            raise InputError(f"{input_path}: no .hdf5 files found")
        self.dataset = safe_component(self.opts.dataset or "egodex")
        self._warnings: list[str] = []

    def warnings(self) -> list[str]:
        return list(self._warnings)

    def datasets(self) -> list[DatasetInfo]:
        return [DatasetInfo(
            name=self.dataset, task_family=TASK_FAMILY, embodiment=EMBODIMENT, fps=self.opts.rate_hz,
            license="CC BY-NC-ND 4.0 (EgoDex; non-commercial)", source_uri=str(self.input_path),
            converter=self.name, converter_version=self.version, rotation_repr="matrix",
            action_frame="current camera, OpenCV (x right, y down, z forward)", control_mode="hand_trajectory",
            cameras={"primary": "<i>.mp4"}, action_raw_keys=[],
            state_raw_keys=[f"{j}[3x4]:12" for j in ("camera", "leftHand", "rightHand")],
            notes=[f"frames sampled at {self.opts.rate_hz} Hz on the video's pts (timestamp_ns = pts - first pts)",
                   "source world frame: ARKit (y up), origin differs per episode; camera pose per step in state_raw",
                   "action = next sample's hand pose in this row's camera frame; invalid on the last row",
                   f"joints with confidence < {self.opts.min_confidence} or NaN are masked; intrinsics per episode in extra"],
            trajectory={"frame": "camera_opencv_current_row", "horizon": self.opts.horizon, "stride": 1,
                        "uv": "pixel / image size", "points": [], "source_rate": "video pts"},
        )]

    def work_units(self, target_bytes: int) -> list[WorkUnit]:
        units = []
        for i, p in enumerate(self.files):
            mp4 = p.with_suffix(".mp4")
            size = mp4.stat().st_size if mp4.exists() else p.stat().st_size
            units.append(WorkUnit(str(p), self._split(p), 0, 1, max(size, _FRAME_BYTES), file_index=i))
        return units

    def _split(self, p: Path) -> str:
        if self.options.split:
            return self.options.split
        return "test" if "test" in p.relative_to(self.root).parts[:-1] else "train"

    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        p = Path(unit.source)
        key = episode_key(self.root, p, self.dataset)
        try:
            yield self._episode(p, key, unit)
        except EpisodeError as err:
            yield Rejected.from_error(key, err, unit.source)

    def _episode(self, p: Path, key: str, unit: WorkUnit) -> Episode:
        mp4 = p.with_suffix(".mp4")
        f = open_h5(p)
        try:
            if "camera" not in f or "intrinsic" not in f["camera"]:
                raise MissingIntrinsics(f"{p.name}: no camera/intrinsic")
            K = _numbers(f["camera/intrinsic"], p.name, "camera/intrinsic", MissingIntrinsics)
            if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0:
                raise MissingIntrinsics(f"{p.name}: camera/intrinsic is not a valid 3x3 matrix ({K.shape})")
            tf = f["transforms"] if "transforms" in f else None
            if tf is None or "camera" not in tf:
                raise MissingIntrinsics(f"{p.name}: no transforms/camera (camera pose needed for the camera frame)")
            names = ["camera"] + [f"{h}Hand" for h in HANDS] + [f"{h}{t}" for h in HANDS for t in FINGERTIPS]
            poses = {n: _numbers(tf[n], p.name, f"transforms/{n}", FeatureMismatch, (4, 4)) for n in names if n in tf}
            conf = f["confidences"] if "confidences" in f else None
            confs = {n: _numbers(conf[n], p.name, f"confidences/{n}", FeatureMismatch, ())
                     for n in names[1:] if conf is not None and n in conf}
            instruction, every = pick_instruction(f)
            attrs = {k: attr_str(f, k) for k in ("task", "environment", "object", "llm_type",
                                                       "which_llm_description") if k in f.attrs}
        finally:
            f.close()
        if not mp4.exists():
            raise MissingFrames(f"{mp4.name}: video missing beside {p.name}")
        index = probe(str(mp4))
        n_pose = len(poses["camera"])
        n = min(n_pose, index.num_frames)
        gap = abs(n_pose - index.num_frames)
        if gap > self.opts.max_frame_mismatch:
            raise PoseMismatch(f"{p.name}: {n_pose} pose frames vs {index.num_frames} video frames "
                               f"(more than --opt max_frame_mismatch={self.opts.max_frame_mismatch})")
        if gap:
            self._warnings.append(f"{key}: {n_pose} pose frames vs {index.num_frames} video frames; aligned on "
                                  f"the first {n}")
        short = sorted(k for k, v in {**poses, **confs}.items() if len(v) < n)
        if short:
            raise PoseMismatch(f"{p.name}: {short[0]} has {len(({**poses, **confs})[short[0]])} frames, camera {n_pose}")
        frames = sample_indices(index.timestamps_ns, self.opts.rate_hz, 0, n)
        cam = poses["camera"][frames]
        if not np.isfinite(cam).all():
            bad = int(frames[np.nonzero(~np.isfinite(cam).reshape(len(frames), -1).all(1))[0][0]])
            raise NonFinitePose(f"{p.name}: camera pose is not finite at frame {bad}")
        cfw = cv_camera_from_world(cam, "arkit")
        obs = Observations()
        for h in HANDS:
            wrist = poses.get(f"{h}Hand")
            ok = self._valid(confs.get(f"{h}Hand"), wrist, frames)
            if wrist is not None:
                obs.positions[f"{h}_hand.wrist_pos"] = wrist[frames, :3, 3][:, None, :]
                obs.position_valid[f"{h}_hand.wrist_pos"] = ok[:, None]
                obs.rotations[f"{h}_hand.wrist_rot"] = wrist[frames, :3, :3]
                obs.rotation_valid[f"{h}_hand.wrist_rot"] = ok
            tips = np.zeros((len(frames), len(FINGERTIPS), 3))
            tips_ok = np.zeros((len(frames), len(FINGERTIPS)), bool)
            for i, t in enumerate(FINGERTIPS):
                tp = poses.get(f"{h}{t}")
                if tp is not None:
                    tips[:, i] = tp[frames, :3, 3]
                    tips_ok[:, i] = self._valid(confs.get(f"{h}{t}"), tp, frames)
            obs.positions[f"{h}_hand.fingertips"] = tips
            obs.position_valid[f"{h}_hand.fingertips"] = tips_ok
        chunk, cmask = build_chunks(obs, cfw, K, (index.width, index.height), self.opts.horizon)
        traj, tmask = pad_horizon(chunk, cmask)
        s = len(frames)
        action = np.zeros((s, ACTION.width), np.float32)
        amask = np.zeros((s, ACTION.width), bool)
        state = np.zeros((s, STATE.width), np.float32)
        smask = np.zeros((s, STATE.width), bool)
        for h in HANDS:
            for slot in _HAND_SLOTS:
                name = f"{h}_hand.{slot}"
                a, b = ACTION.range(name)
                ta, tb = TRAJECTORY.range(name)
                action[:, a:b], amask[:, a:b] = chunk[:, 1, ta:tb], cmask[:, 1, ta:tb]
            name = f"{h}_hand.wrist_pos"
            a, b = STATE.range(name)
            ta, tb = TRAJECTORY.range(name)
            state[:, a:b], smask[:, a:b] = chunk[:, 0, ta:tb], cmask[:, 0, ta:tb]
        raw = [poses["camera"][frames, :3, :4].reshape(s, 12)]
        for h in HANDS:
            w = poses.get(f"{h}Hand")
            raw.append(np.zeros((s, 12)) if w is None else w[frames, :3, :4].reshape(s, 12))
        decoder = open_decoder(self.opts.decoder, str(mp4), index=index)
        try:
            images, clip = store_frames(decoder, frames, self.frame_storage, self.opts.rate_hz)
        finally:
            decoder.close()
        extra = {**attrs, "intrinsic": K.tolist(), "image_size": [index.width, index.height],
                 "video_frames": frames.tolist(), "pose_frames": n_pose, "video_frame_count": index.num_frames,
                 "declared_fps": str(index.declared_rate), "measured_fps": str(index.mean_rate)}
        return self.make_episode(  # action = the next sample's hand pose: undefined on the last row
            key, timestamp_ns=index.timestamps_ns[frames], action=action, action_mask=amask, state=state,
            state_mask=smask, state_raw=np.concatenate(raw, 1).astype(np.float32), last_action_valid=False,
            instruction=instruction, instructions=every, images={"primary": images} if images is not None else {},
            videos={"primary": clip} if clip is not None else {}, split=unit.split, source_file=str(p),
            source_index=0, extra=extra, trajectory=traj, trajectory_mask=tmask)

    def _valid(self, conf, pose, frames) -> np.ndarray:
        if pose is None:
            return np.zeros(len(frames), bool)
        ok = np.isfinite(pose[frames]).all((1, 2))
        if conf is not None:
            ok &= conf[frames] >= self.opts.min_confidence
        return ok


def _scan(input_path: str, limit: int | None = None) -> list[Path]:
    p = Path(input_path)
    if p.is_file():
        return [p] if p.suffix.lower() in (".hdf5", ".h5") else []
    out = []
    for q in sorted(p.rglob("*.hdf5"), key=lambda x: natural_key(posixpath.join(*x.relative_to(p).parts))):
        out.append(q)
        if limit and len(out) >= limit:
            break
    return out


def _numbers(ds, file: str, name: str, error: type[EpisodeError], frame_shape: tuple | None = None) -> np.ndarray:
    """A dataset read as float64, checked to be numbers (and, for per-frame data, ``[T, *frame_shape]``)."""
    try:
        a = np.asarray(ds[()], np.float64)
    except (TypeError, ValueError, OSError) as err:
        raise error(f"{file}: {name} is not numeric ({type(err).__name__})") from None
    if frame_shape is not None and (a.ndim != 1 + len(frame_shape) or a.shape[1:] != frame_shape):
        raise error(f"{file}: {name} has shape {list(a.shape)}, expected [T, {', '.join(map(str, frame_shape))}]")
    return a
