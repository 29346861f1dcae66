"""The ``lerobot`` converter: a LeRobot v3.0 or v2.x dataset folder (or a Hub snapshot of one) → episodes.

Planning reads only metadata (``meta.py``); a work unit is a run of episodes of one data parquet file (v3:
several episodes per file; v2: one). Reading a unit reads its data file once, then per episode checks the
rows against the metadata (length, global index range, frame index, timestamps = frame_index / fps),
maps ``names`` to slots through a robot-type spec (``mapping.py``), keeps image-feature bytes as they are
and decodes video features at the episode's ``from_timestamp + frame_index / fps``, storing them as images
or clips per the pipeline's ``--opt storage``. An episode that fails a check is rejected with a named
reason (``errors.py``) and the unit goes on.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from vlaflow.media import PyAVDecoder, nearest_frames, probe
from vlaflow.schemas import DatasetInfo, EpisodeError, FeatureMismatch, InputError, NonFiniteValue, step_timestamps_ns
from vlaflow.schemas.conventions import NS_PER_S
from vlaflow.schemas.names import is_safe_rel, safe_component

from ..base import Converter, ConverterOptions, ReadItem, Rejected, WorkUnit, option
from ..standardize import DatasetSpec, last_action_invalid, spec_from_dict, spec_to_dict, standardize
from ..units import pack_ranges
from . import errors as E
from .mapping import builtin_specs, camera_roles, choose_spec, export_spec, named_steps, spec_keys
from .meta import DEFAULT_FEATURES, EpisodeMeta, LeRobotMeta, looks_like_lerobot, read_meta

TIMESTAMP_TOLERANCE_S = 1e-4  # LeRobot's own check_timestamps_sync default
EXPORT_EMBODIMENT = "meta/vlaflow/embodiment.yaml"  # written by `vlaflow export lerobot`
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, IndexError, pa.ArrowException)
_HUB_SNAPSHOT = re.compile(r"datasets--[^/]+--([^/]+)/snapshots/[^/]+/?$")


@dataclass(frozen=True)
class UnitEpisodes:
    """A work unit's payload: its episodes, and on one unit per data file every episode the metadata lists in
    that file (so rows of an episode no listing owns are reported once)."""

    episodes: tuple[EpisodeMeta, ...]
    listed: tuple[int, ...] = ()


class LeRobotConverter(Converter):
    name = "lerobot"
    version = "1"
    description = "LeRobot v3.0 / v2.1 dataset folder or Hub snapshot (parquet + MP4 or embedded images)"
    embodiment_dir = Path(__file__).parent / "embodiments"

    @dataclass(frozen=True)
    class Options:
        dataset: str | None = option(None, "dataset name (default: the folder's, or the Hub repo's name)")
        robot_spec: str | None = option(None, "a shipped spec by robot type (default: info.json's robot_type)")
        embodiment: str | None = option(None, "embodiment id of every episode (default: the spec's)")

    @classmethod
    def sniff(cls, input_path: str) -> bool:
        return looks_like_lerobot(input_path)

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        super().__init__(input_path, options)
        if "://" in input_path:
            raise InputError(f"{input_path}: the lerobot converter reads a local folder (download a Hub dataset "
                             "with `hf download --repo-type dataset ORG/NAME --local-dir DIR` first)")
        self.meta: LeRobotMeta = read_meta(input_path)
        self._warnings: list[str] = list(self.meta.warnings)
        self.dataset = safe_component(self.opts.dataset or _default_name(input_path))
        self._export_embodiment = self._read_export_embodiment()
        self.spec = self._resolve_spec()
        self.embodiment_id = self.opts.embodiment or (self.spec.embodiment if self.spec else "generic")
        self.embodiments.get(self.embodiment_id)  # unknown id: SpecError, one line on the CLI
        self.cameras, unplaced = camera_roles(self.spec, self.meta.camera_keys)
        if unplaced:
            self._warnings.append(f"cameras without a role are not carried: {unplaced}")
        self.action_raw_key = "action" if "action" in self.meta.features else None
        self.state_raw_key = "observation.state" if "observation.state" in self.meta.features else None
        carried = {self.action_raw_key, self.state_raw_key, *self.cameras.values(), "next.reward", "next.done"}
        if self.spec is not None:
            carried |= {k.partition("[")[0] for k in spec_keys(self.spec)}
        self.dropped = {k: "no slot or raw column for it" for k in self.meta.features
                        if k not in carried and k not in DEFAULT_FEATURES}

    # -- spec ------------------------------------------------------------------------------------
    def _read_export_embodiment(self) -> dict | None:
        path = Path(self.input_path) / EXPORT_EMBODIMENT
        if not path.is_file():
            return None
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise InputError(f"{path}: unreadable embodiment ({err})") from None
        return doc if isinstance(doc, dict) else None

    @cached_property
    def embodiments(self):
        """The base registry, plus the embodiment an export of vlaflow's wrote beside its metadata."""
        reg = Converter.embodiments.func(self)
        return reg.with_specs([self._export_embodiment]) if self._export_embodiment else reg

    def _resolve_spec(self) -> DatasetSpec | None:
        m = self.meta
        if self.options.spec is not None:
            return spec_from_dict(self.options.spec, source=self.options.spec_file or "--spec")
        specs = builtin_specs()
        robot_type = self.opts.robot_spec or m.robot_type
        spec, why = choose_spec(robot_type, m.features, m.names, specs) if robot_type else (None, "no robot_type")
        if spec is None and self.opts.robot_spec:
            raise InputError(f"--opt robot_spec={self.opts.robot_spec}: {why}")
        if spec is None:
            spec = export_spec(m.robot_type, m.features, m.names)
            if spec is not None and spec.embodiment not in self.embodiments:
                self._warnings.append(f"exported names but embodiment {spec.embodiment!r} is unknown: raw only")
                spec = None
        if spec is None:
            self._warnings.append(f"{why}: actions and states are kept raw only (action_raw/state_raw), "
                                  "embodiment generic; pass --spec to map them to slots")
        return spec

    def resolved_spec(self) -> dict | None:
        return spec_to_dict(self.spec) if self.spec is not None else None

    def datasets(self) -> list[DatasetInfo]:
        conv = self.spec.conventions if self.spec else {}
        m = self.meta
        return [DatasetInfo(
            name=self.dataset, task_family=self.spec.task_family if self.spec else "manipulation",
            embodiment=self.embodiment_id, fps=m.fps, license=str(m.info.get("license") or
                                                                  (self.spec.license if self.spec else "unknown")),
            source_uri=os.path.abspath(self.input_path), converter=self.name, converter_version=self.version,
            gripper_convention=conv.get("gripper_convention", "none"), rotation_repr=conv.get("rotation_repr", "none"),
            action_frame=conv.get("action_frame", "none"), control_mode=conv.get("control_mode", "none"),
            cameras=dict(self.cameras),
            action_raw_keys=[f"action[{n}]" for n in m.names("action")] if self.action_raw_key else [],
            state_raw_keys=[f"observation.state[{n}]" for n in m.names("observation.state")]
            if self.state_raw_key else [],
            dropped_keys=dict(self.dropped),
            notes=[f"LeRobot {m.version}, robot_type {m.robot_type or 'unset'}"] + (list(self.spec.notes) if self.spec else []),
        )]

    def warnings(self) -> list[str]:
        return list(dict.fromkeys(self._warnings))

    # -- work units ------------------------------------------------------------------------------
    def work_units(self, target_bytes: int) -> list[WorkUnit]:
        m = self.meta
        groups: dict[tuple[str, str], list[EpisodeMeta]] = {}
        listed: dict[str, list[int]] = {}
        for e in m.episodes:
            groups.setdefault((m.split_of(e.index), e.data_path), []).append(e)
            listed.setdefault(e.data_path, []).append(e.index)
        units = []
        last: dict[str, int] = {}  # data file -> its last unit, which also reports rows no listed episode owns
        for fi, ((split, rel), eps) in enumerate(groups.items()):
            source = str(m.root / rel) if rel else str(m.root)
            costs = self._costs(rel, eps)
            for a, b, acc in pack_ranges(costs, target_bytes):
                last[rel] = len(units)
                units.append(WorkUnit(source, split, eps[a].index, eps[b - 1].index + 1, max(acc, 1), 0, fi,
                                      UnitEpisodes(tuple(eps[a:b]))))
        for rel, i in last.items():
            if rel:
                units[i] = replace(units[i], payload=replace(units[i].payload, listed=tuple(listed[rel])))
        return units

    def _costs(self, rel: str, eps: list[EpisodeMeta]) -> list[int]:
        """Bytes per episode: its share (by length) of its data file and of each video file it reads."""
        size = _size(self.meta.root / rel) if rel else 0
        total = sum(e.length for e in eps) or 1
        video = {}
        for e in eps:
            for v in e.videos:
                video.setdefault(v.path, _size(self.meta.root / v.path))
        per_video_frames = max(total, 1)
        return [max(1, size * e.length // total + sum(video[v.path] * e.length // per_video_frames for v in e.videos))
                for e in eps]

    # -- read ------------------------------------------------------------------------------------
    def episode_key(self, split: str, index: int) -> str:
        return f"{self.dataset}/{safe_component(split or 'all')}/episode_{index:06d}"

    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        eps = unit.payload.episodes
        try:
            table = self._read_data(unit.source)
        except EpisodeError as err:
            for e in eps:
                yield Rejected.from_error(self.episode_key(unit.split, e.index), err, unit.source, e.length)
            return
        ep_col = table["episode_index"].to_numpy() if "episode_index" in table.column_names else None
        videos = _VideoCache(self.meta.root)
        try:
            for e in eps:
                key = self.episode_key(unit.split, e.index)
                try:
                    if e.problem:
                        raise E.MissingEpisodeMetadata(e.problem)
                    if ep_col is None:
                        raise E.MissingData(f"{unit.source}: no episode_index column")
                    rows = np.nonzero(ep_col == e.index)[0]
                    yield self._episode(key, unit.split, e, table.take(pa.array(rows)), unit.source, videos)
                except EpisodeError as err:
                    yield Rejected.from_error(key, err, unit.source, e.length)
                except _READ_ERRORS as err:
                    yield Rejected(key, "corrupt_record", f"{type(err).__name__}: {str(err)[:300]}", unit.source,
                                   e.length)
        finally:
            videos.close()
        if unit.payload.listed and ep_col is not None:
            extra, counts = np.unique(ep_col, return_counts=True)
            for idx, count in zip(extra.tolist(), counts.tolist()):
                if idx not in unit.payload.listed:
                    yield Rejected(self.episode_key(unit.split, int(idx)), E.UnlistedEpisode.code,
                                   f"{count} rows of episode {idx} in {Path(unit.source).name}, which the metadata "
                                   "does not list", unit.source, int(count))

    def _read_data(self, path: str) -> pa.Table:
        if not Path(path).is_file():
            raise E.MissingData(f"{path}: data file missing")
        try:
            f = pq.ParquetFile(path)
            keep = [c for c in f.schema_arrow.names if c in self.meta.features or c == "episode_index"]
            return f.read(columns=keep)
        except (OSError, ValueError, pa.ArrowException) as err:
            raise E.UnreadableData(f"{path}: {type(err).__name__}: {str(err)[:200]}") from None

    def _check_rows(self, e: EpisodeMeta, t: pa.Table) -> None:
        n = t.num_rows
        if n == 0:
            raise E.MissingData(f"episode {e.index}: no rows in {e.data_path}")
        if n != e.length:
            raise E.EpisodeLengthMismatch(f"episode {e.index}: metadata says {e.length} frames, the data has {n}")
        if e.from_index is not None and e.to_index is not None and e.to_index - e.from_index != n:
            raise E.EpisodeLengthMismatch(f"episode {e.index}: index range {e.from_index}..{e.to_index} "
                                          f"holds {e.to_index - e.from_index} frames, the data has {n}")
        if "frame_index" in t.column_names:
            fi = t["frame_index"].to_numpy()
            bad = np.nonzero(fi != np.arange(n))[0]
            if len(bad):
                raise E.IndexMismatch(f"episode {e.index}: frame_index {int(fi[bad[0]])} at row {int(bad[0])}")
        if e.from_index is not None and "index" in t.column_names:
            gi = t["index"].to_numpy()
            bad = np.nonzero(gi != np.arange(e.from_index, e.from_index + n))[0]
            if len(bad):
                raise E.IndexMismatch(f"episode {e.index}: row {int(bad[0])} has index {int(gi[bad[0]])}, the "
                                      f"metadata's range starts at {e.from_index}")
        if "timestamp" in t.column_names:
            ts = np.asarray(t["timestamp"].to_numpy(zero_copy_only=False), np.float64).reshape(n)
            want = np.arange(n) / float(self.meta.fps)
            bad = np.nonzero(np.abs(ts - want) > TIMESTAMP_TOLERANCE_S)[0]
            if len(bad):
                i = int(bad[0])
                raise E.TimestampMismatch(f"episode {e.index}: frame {i} at {ts[i]:.6f} s, expected {want[i]:.6f} s "
                                          f"(fps {self.meta.fps})")

    def _episode(self, key: str, split: str, e: EpisodeMeta, t: pa.Table, source: str, videos: "_VideoCache"):
        self._check_rows(e, t)
        n = t.num_rows
        steps = {k: _numeric(t[k], n) for k in self.meta.numeric_keys if k in t.column_names}
        action_raw = steps.get(self.action_raw_key, np.zeros((n, 0))).astype(np.float32) if self.action_raw_key \
            else np.zeros((n, 0), np.float32)
        state_raw = steps.get(self.state_raw_key, np.zeros((n, 0))).astype(np.float32) if self.state_raw_key \
            else np.zeros((n, 0), np.float32)
        if self.action_raw_key and self.action_raw_key not in steps:
            raise FeatureMismatch(f"episode {e.index}: no {self.action_raw_key!r} column")
        arrays = {}
        if self.spec is not None:
            spec = self.spec
            steps = named_steps(steps, spec_keys(spec), self.meta.names)
            action, amask, state, smask = standardize(steps, spec, n)
            valid_last = not last_action_invalid(spec)
            check = action[:-1] if not valid_last else action
            if not np.isfinite(check).all() or not np.isfinite(state).all():
                raise NonFiniteValue(f"episode {e.index}: non-finite action or state value")
            if not valid_last:
                action[-1] = 0.0
            arrays = dict(action=action, action_mask=amask, state=state, state_mask=smask, last_action_valid=valid_last)
        elif not np.isfinite(action_raw).all():
            raise NonFiniteValue(f"episode {e.index}: non-finite action value")
        tasks = self._tasks(e, t)
        images, clips = {}, {}
        for role, feat in self.cameras.items():
            if self.meta.features[feat]["dtype"] == "image":
                images[role] = self._image_bytes(e, t[feat], feat)
            else:
                ref = next((v for v in e.videos if v.key == feat), None)
                if ref is None:
                    raise E.MissingVideo(f"episode {e.index}: no video listed for {feat}")
                frames, clip = videos.frames(e, ref, n, self.meta.fps, self.frame_storage)
                if clip is not None:
                    clips[role] = clip
                else:
                    images[role] = frames
        reward = steps.get("next.reward")
        done = steps.get("next.done")
        return self.make_episode(
            key, timestamp_ns=step_timestamps_ns(n, self.meta.fps), action_raw=action_raw, state_raw=state_raw,
            is_terminal=bool(done is not None and done.reshape(-1)[-1] > 0), embodiment=self.embodiment_id,
            instruction=tasks[0] if len(set(tasks)) == 1 else tasks, instructions=list(dict.fromkeys(e.tasks or tasks)),
            images=images, videos=clips, reward=None if reward is None else reward.reshape(-1).astype(np.float32),
            split=split, source_file=source, source_index=e.index,
            extra={"lerobot_episode_index": e.index, "robot_type": self.meta.robot_type, "codebase_version": self.meta.version},
            **arrays)

    def _tasks(self, e: EpisodeMeta, t: pa.Table) -> list[str]:
        """The task of every step: ``task_index`` through the tasks table, else the episode's listed task."""
        if "task_index" in t.column_names:
            idx = t["task_index"].to_numpy()
            missing = sorted({int(i) for i in idx if int(i) not in self.meta.tasks})
            if missing:
                raise FeatureMismatch(f"episode {e.index}: task_index {missing[:5]} not in the tasks table")
            return [self.meta.tasks[int(i)] for i in idx]
        return [e.tasks[0] if e.tasks else ""] * t.num_rows

    def _image_bytes(self, e: EpisodeMeta, col: pa.ChunkedArray, feat: str) -> list[bytes]:
        out = []
        for i, cell in enumerate(col.to_pylist()):
            data = cell.get("bytes") if isinstance(cell, dict) else None
            if data is None and isinstance(cell, dict) and cell.get("path"):
                rel = str(cell["path"])
                if is_safe_rel(rel) and (self.meta.root / rel).is_file():
                    data = (self.meta.root / rel).read_bytes()
            if not data:
                raise E.MissingImage(f"episode {e.index}: {feat} frame {i} has no bytes and no readable file")
            out.append(data)
        return out


class _VideoCache:
    """Probed indexes and open decoders of the unit's video files (v3 files hold many episodes)."""

    def __init__(self, root: Path):
        self.root = root
        self._dec: dict[str, PyAVDecoder] = {}

    def decoder(self, rel: str) -> PyAVDecoder:
        if rel not in self._dec:
            path = self.root / rel
            if not path.is_file():
                raise E.MissingVideo(f"{rel}: video file missing")
            self._dec[rel] = PyAVDecoder(str(path), probe(str(path)))
        return self._dec[rel]

    def frames(self, e: EpisodeMeta, ref, n: int, fps: Fraction, storage):
        dec = self.decoder(ref.path)
        idx = dec.index
        tb = idx.time_base
        abs_ns = (idx.pts * tb.numerator * NS_PER_S + tb.denominator // 2) // tb.denominator
        want_ns = np.round((ref.from_s + np.arange(n) / float(fps)) * NS_PER_S).astype(np.int64)
        pick = nearest_frames(abs_ns, want_ns)
        err = np.abs(abs_ns[pick] - want_ns)
        tol = int(NS_PER_S * 0.4 / float(fps))
        if (err > tol).any():
            i = int(np.nonzero(err > tol)[0][0])
            if want_ns[i] > abs_ns[-1]:
                raise E.ShortVideo(f"episode {e.index}: {ref.key} ({ref.path}) ends at {abs_ns[-1] / 1e9:.3f} s, "
                                   f"the episode needs a frame at {want_ns[i] / 1e9:.3f} s (step {i} of {n})")
            raise E.TimestampMismatch(f"episode {e.index}: {ref.key} has no frame within {tol / 1e6:.1f} ms of "
                                      f"{want_ns[i] / 1e9:.3f} s (step {i})")
        got = dict(dec.frames(sorted(set(pick.tolist()))))  # UndecodableVideo: a named rejection
        rgb = (got[int(i)] for i in pick)
        if storage.as_video:
            return None, storage.clip(rgb, fps)
        return [storage.encode_image(f) for f in rgb], None

    def close(self) -> None:
        for d in self._dec.values():
            d.close()
        self._dec.clear()


def _numeric(col: pa.ChunkedArray, n: int) -> np.ndarray:
    """A feature column (list/fixed-size list of numbers, or a scalar per row) → float64 [n, D]."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        flat = pc.list_flatten(col)
        while pa.types.is_list(flat.type) or pa.types.is_fixed_size_list(flat.type):
            flat = pc.list_flatten(flat)
        return np.asarray(flat.to_numpy(zero_copy_only=False), np.float64).reshape(n, -1)
    return np.asarray(col.to_numpy(zero_copy_only=False), np.float64).reshape(n, 1)


def _default_name(path: str) -> str:
    p = os.path.abspath(path)
    m = _HUB_SNAPSHOT.search(p)
    return m.group(1) if m else os.path.basename(p.rstrip("/")) or "lerobot"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
