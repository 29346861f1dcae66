"""``vln_frames``: pre-rendered VLN trajectory folders (StreamVLN / NaVILA-style training data).

``annotations.json`` lists ``{id, video, instructions [...], actions [-1, a1, ..., an]}``; the relative folder
``video`` (``images/<episode>``) holds ``rgb/NNN.jpg``, one frame per ``actions`` entry: frame ``t`` is the
observation before ``a(t+1)`` (the leading ``-1`` aligns frame 0), the last one precedes the closing STOP, which
StreamVLN leaves implicit and vlaflow appends (a source ending with STOP keeps its own; a trailing frame after
it is dropped). One row per ``actions`` entry: frame bytes untouched in ``images.primary``, the action id in
``action_raw``; the source has no poses, so ``nav.waypoints`` dead-reckon the nominal steps and state is masked.
"""
from __future__ import annotations

import contextlib
import posixpath
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator, Literal

import numpy as np
from vlaflow.schemas import DatasetInfo, EpisodeError, FeatureMismatch, InputError
from vlaflow.schemas.names import safe_component

from ..base import Converter, ConverterOptions, ReadItem, Rejected, WorkUnit, option
from ..units import record_units
from .errors import CorruptJson, MissingFrames
from .files import Source, safe_relpath
from .geometry import replay_discrete
from .pathconv import finite_or_none
from .rows import DECISION_FPS, TASK_FAMILY, discrete_commands, end_with_stop, habitat_steps, nav_arrays

ANNOTATIONS = "annotations.json"
_IMAGE_EXT = (".jpg", ".jpeg", ".png")


class VLNFramesConverter(Converter):
    name = "vln_frames"
    version = "1.0"
    description = ("Pre-rendered VLN trajectories (annotations.json + images/<episode>/rgb/*.jpg), "
                   "frames as images.primary")

    @dataclass(frozen=True)
    class Options:
        turn_deg: Literal[15, 30] = option(15, "turn step in degrees (embodiment nav_habitat_<turn_deg>deg)")
        dataset: str | None = option(None, "dataset name (default vln_frames_<folder>)")
        per_instruction: bool = option(True, "one episode per instruction; false: one per trajectory")

    @classmethod
    def sniff(cls, input_path: str) -> bool:
        src = Source(input_path)
        return src.is_file(posixpath.join(src.root, ANNOTATIONS)) and src.is_dir(posixpath.join(src.root, "images"))

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        super().__init__(input_path, options)
        self.src = src = Source(input_path)
        self.ann_path = posixpath.join(src.root, ANNOTATIONS)
        if not src.is_file(self.ann_path):
            raise InputError(f"{input_path}: no {ANNOTATIONS} (expected a pre-rendered VLN folder)")
        (self.embodiment, self.forward_m, self.turn_rad, self.pitch_rad,
         self.allowed) = habitat_steps(self.opts.turn_deg, self.embodiments)
        self.dataset = self.opts.dataset or f"vln_frames_{safe_component(posixpath.basename(src.root) or 'data').lower()}"
        self.split = safe_component(self.options.split) if self.options.split else "train"

    def datasets(self) -> list[DatasetInfo]:
        return [DatasetInfo(
            name=self.dataset, task_family=TASK_FAMILY, embodiment=self.embodiment, fps=DECISION_FPS,
            license="unknown (rendered from Matterport3D: non-commercial terms apply)",
            source_uri=f"{self.input_path} (pre-rendered VLN trajectories)", converter=self.name,
            converter_version=self.version, action_frame="agent", control_mode="discrete",
            cameras={"primary": "images/<episode>/rgb"}, action_raw_keys=["action_id[1]"], state_raw_keys=[],
            notes=["one row per frame = per decision at a nominal 1 Hz; the last row is the (appended) STOP",
                   ("nav.waypoints dead-reckon the nominal steps (no poses in the source; collisions unseen); "
                   "state masked out")],
        )]

    @cached_property
    def entries(self) -> list | EpisodeError:
        data = self.src.json_or_error(self.ann_path)
        return data if isinstance(data, (list, EpisodeError)) else CorruptJson(
            f"{ANNOTATIONS}: expected a list of trajectories, got {type(data).__name__}")

    def _frames(self, entry: dict) -> list[str]:
        rel = safe_relpath(entry.get("video"))
        folder = posixpath.join(self.src.root, rel, "rgb")
        if not self.src.is_dir(folder):
            raise MissingFrames(f"no frame folder {rel}/rgb")
        return self.src.files(folder, _IMAGE_EXT)

    def _texts(self, entry) -> list[str]:
        ins = entry.get("instructions", entry.get("instruction")) if isinstance(entry, dict) else None
        return [ins] if isinstance(ins, str) else [str(x) for x in ins] if isinstance(ins, list) else []

    def work_units(self, target_bytes: int) -> list[WorkUnit]:
        if not isinstance(entries := self.entries, list) or not entries:
            return [WorkUnit(self.ann_path, self.split, 0, None, max(self.src.size(self.ann_path), 1))]
        sizes = []
        for entry in entries[:4]:  # frame bytes estimated from a few trajectories instead of stat'ing every frame
            with contextlib.suppress(EpisodeError, AttributeError):
                sizes += [self.src.size(path) for path in self._frames(entry)]
        per_frame = sum(sizes) / len(sizes) if sizes else 20_000
        acts = [e.get("actions") if isinstance(e, dict) else None for e in entries]
        copies = [max(1, len(self._texts(e))) if self.opts.per_instruction else 1 for e in entries]
        costs = [int(per_frame * (len(a) if isinstance(a, list) else 1) * c) + 1 for a, c in zip(acts, copies)]
        return record_units(self.ann_path, self.split, costs, target_bytes)

    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        entries = self.entries
        base = f"{self.dataset}/{unit.split}"
        if isinstance(entries, EpisodeError):
            yield Rejected(f"{base}/{ANNOTATIONS}", entries.code, str(entries), unit.source)
            return
        for index in range(unit.start, len(entries) if unit.stop is None else min(unit.stop, len(entries))):
            entry, where = entries[index], f"{unit.source}#{index}"
            stem = f"{base}/{safe_component(entry.get('id', index) if isinstance(entry, dict) else index)}"
            instrs, per = self._texts(entry), self.opts.per_instruction
            keys = [f"{stem}_{k}" for k in range(len(instrs))] if per and instrs else [stem]
            try:
                if not isinstance(entry, dict):
                    raise FeatureMismatch(f"entry {index} is not an object")
                ids, appended = self._actions(entry)
                frames = self._frames(entry)
                if len(frames) not in (len(ids), len(ids) + (0 if appended else 1)):
                    raise MissingFrames(f"{len(frames)} frames in {entry.get('video')}/rgb for {len(ids)} decisions "
                                        f"({len(entry['actions'])} action entries incl. the leading -1)")
                images = [self.src.read_bytes(p) for p in frames[: len(ids)]]
            except EpisodeError as e:
                acts = entry.get("actions") if isinstance(entry, dict) else None
                yield from (Rejected.from_error(k, e, where, len(acts) if isinstance(acts, list) else 0) for k in keys)
                continue
            except OSError as err:
                yield from (Rejected(k, MissingFrames.code, f"cannot read frames: {err}", where) for k in keys)
                continue
            poses = replay_discrete((0.0, 0.0), 0.0, ids.tolist(), self.forward_m, self.turn_rad)[:-1]
            arrays = nav_arrays(poses, discrete_commands(ids, self.forward_m, self.turn_rad, self.pitch_rad),
                                ids[:, None], np.zeros((len(ids), 0)), with_state=False)
            extra = {**finite_or_none({k: v for k, v in entry.items() if k != "actions"}), "stop_appended": appended,
                     "frames": len(images), "frame_files": [posixpath.basename(p) for p in frames[: len(ids)]]}
            texts = instrs if per and instrs else [instrs[0] if instrs else ""]
            for k, (key, text) in enumerate(zip(keys, texts, strict=True)):
                yield self.make_episode(
                    key, **arrays, instruction=text, instructions=[text] if per else instrs, images={"primary": images},
                    language=str(entry.get("language") or "en"), split=unit.split, source_file=unit.source,
                    source_index=index, extra=dict(extra, instruction_index=k) if per else extra)

    def _actions(self, entry: dict) -> tuple[np.ndarray, bool]:
        """The decision ids (one per row) and whether the closing STOP was appended."""
        acts = entry.get("actions")
        if not isinstance(acts, list) or not acts or not all(isinstance(a, int) for a in acts):
            raise FeatureMismatch("actions must be a non-empty list of integers")
        if acts[0] != -1:
            raise FeatureMismatch(f"actions must start with -1 (the frame-0 placeholder), got {acts[0]}")
        return end_with_stop(acts[1:], self.allowed, append=True, first=1)
