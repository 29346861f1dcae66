"""What the simulation-log converters share: input scanning, options, work units, the read loop with
named rejections, and turning standardized step arrays into an ``Episode``.

A subclass says which layouts it reads (``layouts``), lists a file's episodes (``list_episodes``)
and reads one episode (``read_unit``); the per-dataset mapping of source keys to slots is a YAML
spec in ``specs/`` applied by ``converters.standardize`` (the same mechanism as Open-X).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from vlaflow.schemas import DatasetInfo, Episode, EpisodeError, FeatureMismatch, InputError, NonFiniteValue
from vlaflow.schemas.columns import IMAGE_TRANSFORMS
from vlaflow.schemas.names import natural_key, safe_component

from ..base import Converter, ConverterOptions, ReadItem, Rejected, WorkUnit, option
from ..standardize import (DatasetSpec, last_action_invalid, load_spec, load_spec_dir, spec_from_dict, spec_to_dict,
                           standardize)
from ..units import pack_ranges
from .errors import LengthMismatch, UnreadableFile
from .hdf5 import SourceFile, classified, classify_input, scan_input

log = logging.getLogger(__name__)

SPEC_DIR = Path(__file__).parent / "specs"
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError)  # h5py: RuntimeError on a damaged object header


def builtin_specs() -> dict[str, DatasetSpec]:
    """The sim specs by file stem (``robosuite_osc_pose``, ``libero``, ``maniskill_pd_joint_pos``...)."""
    return {p.stem: load_spec(p) for p in sorted(SPEC_DIR.glob("*.yaml"))}


_SPECS: dict[str, DatasetSpec] | None = None


def spec_named(name: str) -> DatasetSpec:
    global _SPECS
    if _SPECS is None:
        _SPECS = builtin_specs()
    return _SPECS[name]


@dataclass(frozen=True)
class EpisodeEntry:
    """One episode of a source file, as listed when planning; a unit's payload is a tuple of them."""

    split: str
    name: str  # group name (demo_3, traj_0) or the file's own name for one-episode files
    index: int  # position in the file
    nbytes: int
    steps: int = 0


@dataclass(frozen=True)
class Unlisted:
    """The payload of a unit whose file could not be listed: ``read`` reports it as one rejection."""

    code: str
    reason: str


def specialize(spec: DatasetSpec, keys, params: dict | None = None) -> DatasetSpec:
    """The spec for one file: derive/state entries whose source keys the file lacks are dropped
    (optional observations), ``from_controller`` params are filled from the file's controller, and
    ``params["fn:<name>"]`` overrides a transform's params. A missing *action* key stays an error."""
    params = params or {}
    avail = set(keys)
    derives = []
    for d in spec.derive:
        if d.input not in avail:
            continue
        p = dict(d.params)
        src = p.pop("from_controller", None)
        if src and src in params:
            p.update(params[src])
        p.update(params.get(f"fn:{d.fn}", {}))
        derives.append(replace(d, params=p))
        avail.add(d.out)
    for m in spec.action:
        if m.key not in avail:
            raise FeatureMismatch(f"{spec.dataset}: action slot {m.slot} needs {m.key!r}, which this file "
                                  f"does not provide (spec {Path(spec.source).name})")
    return replace(spec, derive=derives, state=[m for m in spec.state if m.key in avail])


def words_from_name(name: str) -> str:
    """``TwoArmHandover`` → ``two arm handover``; ``PickCube-v1`` → ``pick cube``."""
    name = re.sub(r"-v\d+$", "", name)
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").replace("-", " ")
    return " ".join(name.lower().split())


class SimConverter(Converter):
    """Base of the sim converters (not registered itself)."""

    layouts: tuple[str, ...] = ()
    default_split = "train"

    @dataclass(frozen=True)
    class Options:
        dataset: str | None = option(None, "dataset name (default: from the files)")
        embodiment: str | None = option(None, "embodiment id of every episode (default: the spec's)")
        fps: Fraction | None = option(None, "control rate, e.g. 20 or 30000/1001 (default: the files' or the spec's)")
        image_format: Literal["png", "jpeg"] = option("png", "encoding of raw camera arrays (png lossless, jpeg q95)")

        def __post_init__(self):
            if self.fps is not None and self.fps <= 0:
                raise ValueError(f"--opt fps must be positive, got {self.fps}")

    @classmethod
    def sniff(cls, input_path: str) -> bool:
        return classify_input(input_path) in cls.layouts

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        super().__init__(input_path, options)
        self._warnings: list[str] = []
        files = classified(scan_input(input_path))
        if not files:
            raise InputError(f"{input_path}: no HDF5 (.hdf5/.h5) files or RoboTwin pickle episodes found")
        mine = [f for f in files if f.layout in self.layouts]
        other = [f for f in files if f.layout and f.layout not in self.layouts]
        if not mine:
            found = sorted({f.layout for f in other})
            raise InputError(f"{input_path}: no {self.name} file found"
                             + (f" (found layouts {found}; try --converter auto)" if found else ""))
        if other:
            self._warnings.append(f"skipped {len(other)} file(s) of other layouts "
                                  f"({sorted({f.layout for f in other})}), e.g. {other[0].rel}")
        self.sources: list[SourceFile] = [f for f in files if f.layout in self.layouts or f.layout is None]
        self._by_path = {f.path: f for f in self.sources}
        self.layout_counts = {k: sum(f.layout == k for f in mine) for k in self.layouts if any(f.layout == k for f in mine)}
        self.image_format = self.opts.image_format
        self.notes: list[str] = []
        self.setup(mine)
        if self.opts.fps is not None:
            self.fps = self.opts.fps
        if self.opts.embodiment:
            self.embodiment_id = self.opts.embodiment
        self.embodiments.get(self.embodiment_id)  # unknown id: SpecError, one line on the CLI
        if self.opts.dataset:
            self.dataset = safe_component(self.opts.dataset)
        for t in self.image_transform.split("+"):
            if t not in IMAGE_TRANSFORMS:
                raise InputError(f"image transform {t!r} not in {IMAGE_TRANSFORMS}")

    # -- subclass hooks ---------------------------------------------------------------------------
    def setup(self, mine: list[SourceFile]) -> None:
        """Set dataset, spec, embodiment_id, fps, image_transform, cameras, raw keys, conventions."""
        raise NotImplementedError

    def list_episodes(self, sf: SourceFile) -> list[EpisodeEntry]:
        raise NotImplementedError

    def read_unit(self, sf: SourceFile, unit: WorkUnit, entries: list[EpisodeEntry]) -> Iterator[ReadItem]:
        raise NotImplementedError

    # -- metadata ---------------------------------------------------------------------------------
    def spec_for_user(self, default: DatasetSpec) -> DatasetSpec:
        """``--spec`` (parsed on the driver, carried in the options) or ``default``."""
        if self.options.spec is None:
            return default
        return spec_from_dict(self.options.spec, source=self.options.spec_file or "--spec")

    def resolved_spec(self) -> dict:
        """The spec before per-file specialization (``specialize`` drops absent keys, fills controller ranges),
        with what ``--opt dataset/embodiment/fps`` overrode."""
        fps = self.fps.numerator if self.fps.denominator == 1 else str(self.fps)
        return {**spec_to_dict(self.spec), "dataset": self.dataset, "embodiment": self.embodiment_id, "fps": fps}

    def datasets(self) -> list[DatasetInfo]:
        conv = self.spec.conventions
        return [DatasetInfo(
            name=self.dataset, task_family="manipulation", embodiment=self.embodiment_id, fps=self.fps,
            license=self.spec.license, source_uri=os.path.abspath(self.input_path), converter=self.name,
            converter_version=self.version,
            gripper_convention=conv.get("gripper_convention", "none"),
            rotation_repr=conv.get("rotation_repr", "none"),
            action_frame=getattr(self, "action_frame", None) or conv.get("action_frame", "none"),
            control_mode=getattr(self, "control_mode", None) or conv.get("control_mode", "none"),
            image_transform=self.image_transform, cameras=dict(self.cameras),
            action_raw_keys=list(self.action_raw_keys), state_raw_keys=list(self.state_raw_keys),
            notes=list(self.spec.notes) + list(self.notes),
        )]

    def warnings(self) -> list[str]:
        return list(dict.fromkeys(self._warnings))  # plan() may run twice

    # -- ids --------------------------------------------------------------------------------------
    @staticmethod
    def _stem(sf: SourceFile) -> str:
        rel = sf.rel
        for ext in (".hdf5", ".h5", ".he5"):
            if rel.lower().endswith(ext):
                rel = rel[: -len(ext)]
        return "__".join(safe_component(p) for p in rel.split("/") if p)

    def episode_key(self, sf: SourceFile, split: str, name: str | None) -> str:
        parts = [self.dataset, safe_component(split or "all"), self._stem(sf)]
        if name:  # "" = the file is the episode
            parts.append(safe_component(name))
        return "/".join(parts)

    # -- work units -------------------------------------------------------------------------------
    def work_units(self, target_bytes: int) -> list[WorkUnit]:
        per_split: dict[str, list[WorkUnit]] = {}
        for fi, sf in enumerate(self.sources):
            try:
                entries = self.list_episodes(sf)
            except (EpisodeError, *_READ_ERRORS) as err:
                if not isinstance(err, EpisodeError):
                    err = UnreadableFile(f"{sf.rel}: {type(err).__name__}: {err}")
                per_split.setdefault(self.default_split, []).append(WorkUnit(
                    sf.path, self.default_split, 0, None, _size(sf.path), 0, fi, Unlisted(err.code, str(err))))
                continue
            by_split: dict[str, list[EpisodeEntry]] = {}
            for e in entries:
                by_split.setdefault(e.split, []).append(e)
            for split, es in by_split.items():
                per_split.setdefault(split, []).extend(
                    WorkUnit(sf.path, split, es[a].index, es[b - 1].index + 1, max(acc, 1), 0, fi, tuple(es[a:b]))
                    for a, b, acc in pack_ranges([e.nbytes for e in es], target_bytes))
        return [u for split in per_split for u in per_split[split]]

    # -- read -------------------------------------------------------------------------------------
    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        sf = self._by_path.get(unit.source) or SourceFile(unit.source, Path(unit.source).name, None)
        if isinstance(unit.payload, Unlisted):
            yield Rejected(self.episode_key(sf, unit.split, None), unit.payload.code, unit.payload.reason, unit.source)
            return
        yield from self.read_unit(sf, unit, list(unit.payload))

    def guarded(self, sf: SourceFile, entry: EpisodeEntry, fn, *args) -> ReadItem:
        """Run ``fn(*args)`` → Episode; any input error becomes a named ``Rejected``."""
        key = self.episode_key(sf, entry.split, entry.name)
        where = f"{sf.path}#{entry.name}" if entry.name else sf.path
        try:
            return fn(*args)
        except EpisodeError as err:
            return Rejected.from_error(key, err, where, entry.steps)
        except _READ_ERRORS as err:
            return Rejected(key, "corrupt_record", f"{type(err).__name__}: {str(err)[:300]}", where, entry.steps)

    def reject_all(self, sf: SourceFile, entries: list[EpisodeEntry], err: EpisodeError) -> Iterator[Rejected]:
        for e in entries:
            yield Rejected.from_error(self.episode_key(sf, e.split, e.name), err, f"{sf.path}#{e.name}", e.steps)

    # -- episode assembly -------------------------------------------------------------------------
    def assemble(self, *, sf: SourceFile, entry: EpisodeEntry, spec: DatasetSpec, steps: dict, t: int,
                 action_raw: np.ndarray, state_raw: np.ndarray, images: dict, instruction, instructions: list[str],
                 extra: dict, reward=None, is_terminal: bool = False, last_invalid: bool = False,
                 embodiment_id: str | None = None) -> Episode:
        key = self.episode_key(sf, entry.split, entry.name)
        if t < 1:
            raise FeatureMismatch(f"{entry.name}: episode has no steps")
        for k, v in steps.items():
            if len(v) != t:
                raise LengthMismatch(f"{entry.name}: {k!r} has {len(v)} steps, the episode has {t}")
        for name, arr in (("action_raw", action_raw), ("state_raw", state_raw)):
            if arr.shape[0] != t:
                raise LengthMismatch(f"{entry.name}: {name} has {arr.shape[0]} steps, the episode has {t}")
        for role, frames in images.items():
            if frames is not None and len(frames) != t:
                raise LengthMismatch(f"{entry.name}: camera {role} has {len(frames)} frames for {t} steps")
        valid = np.ones(t, dtype=bool)
        if last_invalid or last_action_invalid(spec):
            valid[-1] = False
        bad = ~np.isfinite(action_raw[valid])
        if bad.any():
            step = int(np.nonzero(bad.any(axis=1))[0][0])
            raise NonFiniteValue(f"{entry.name}: non-finite action at step {step}")
        action, amask, state, smask = standardize(steps, spec, t)
        if not valid[-1]:  # keep the undefined last action out of the numbers, as zeros under the mask
            action[-1] = 0.0
        return self.make_episode(
            key, action=action, action_mask=amask, action_raw=np.ascontiguousarray(action_raw, dtype=np.float32),
            state=state, state_mask=smask, state_raw=np.ascontiguousarray(state_raw, dtype=np.float32),
            is_terminal=bool(is_terminal), last_action_valid=bool(valid[-1]), embodiment=embodiment_id,
            instruction=instruction, instructions=list(instructions), images={r: f for r, f in images.items() if f is not None},
            reward=None if reward is None else np.asarray(reward, dtype=np.float32).reshape(t),
            split=entry.split, source_file=sf.path, source_index=entry.index, extra=extra)


def concat_raw(arrays: list[np.ndarray], t: int) -> np.ndarray:
    """[T, k] pieces → float32 [T, sum k] (the source values, cast to float32 only)."""
    parts = [np.asarray(a).reshape(t, -1).astype(np.float32) for a in arrays]
    return np.concatenate(parts, axis=1) if parts else np.zeros((t, 0), np.float32)


def raw_key_names(pairs: list[tuple[str, int]]) -> list[str]:
    return [f"{k}[{w}]" for k, w in pairs]


def _size(path: str) -> int:
    p = Path(path)
    try:
        if p.is_dir():
            return sum(c.stat().st_size for c in p.iterdir() if c.is_file())
        return p.stat().st_size
    except OSError:
        return 0


def natural_sorted(names) -> list[str]:
    return sorted(names, key=natural_key)


__all__ = ["SimConverter", "EpisodeEntry", "specialize", "spec_named", "builtin_specs", "concat_raw",
           "raw_key_names", "words_from_name", "natural_sorted", "load_spec_dir"]
