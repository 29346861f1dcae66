"""``vln_frames``: pre-rendered VLN trajectory folders (StreamVLN / NaVILA-style training data).

Layout: ``annotations.json`` = a list of ``{id, video, instructions [...], actions [-1, a1, a2, ...]}``
beside ``images/<episode>/rgb/NNN.jpg`` (``video`` = ``images/<episode>``, relative to the folder).
There is one frame per entry of ``actions``: the leading ``-1`` aligns frame 0 (the observation before
``a1``), frame ``t`` is the observation before ``a(t+1)``, and the final frame is the one before the
closing STOP, which the data leaves implicit (the StreamVLN loader appends it) and vlaflow writes as
the last row. So an episode has ``len(actions)`` rows, each with its frame in ``images.primary``
(bytes untouched) and its action; ``action_raw`` is the action id. A source that already ends with
STOP keeps its own (a trailing frame after it is dropped).

Without poses in the source, ``nav.waypoints`` dead-reckon the nominal steps (no collisions) and the
state is masked out. Options: ``turn_deg=15|30`` (default 15), ``dataset=NAME`` (default
``vln_frames_<folder>``), ``--split NAME`` names the split (default ``train``),
``per_instruction=false`` keeps one episode per trajectory (first instruction on the rows, all in
the episodes table) instead of one episode per instruction.
"""
from __future__ import annotations

import posixpath
import re
from typing import Iterator

import numpy as np
from vlaflow.schemas import DatasetInfo, EpisodeError, FeatureMismatch, InputError

from ..base import Converter, ConverterOptions, ReadItem, Rejected, WorkUnit
from .errors import CorruptJson, MissingFrames, MissingStop, UnknownAction, UnsafePath
from .files import Source, safe_name
from .geometry import replay_discrete
from .pathconv import finite_or_none
from .rows import DECISION_FPS, STOP, TASK_FAMILY, discrete_commands, habitat_steps, nav_episode, prompt_for

ANNOTATIONS = "annotations.json"
_IMAGE_EXT = (".jpg", ".jpeg", ".png")
_DIGITS = re.compile(r"(\d+)")


def _frame_order(name: str):
    """Natural order: 2.jpg before 10.jpg, whatever the zero padding."""
    return [int(p) if p.isdigit() else p for p in _DIGITS.split(name)]


def safe_relpath(rel) -> str:
    """A relative POSIX path from data, refusing absolute paths, drive letters and '..' components."""
    if not isinstance(rel, str) or not rel.strip():
        raise UnsafePath(f"frame folder {rel!r} is not a path")
    if "\\" in rel or "\x00" in rel or rel.startswith("/") or re.match(r"^[A-Za-z]:", rel) or "://" in rel:
        raise UnsafePath(f"frame folder {rel[:120]!r} is not a plain relative path")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise UnsafePath(f"frame folder {rel[:120]!r} leaves the dataset folder")
    return "/".join(parts)


class VLNFramesConverter(Converter):
    name = "vln_frames"
    version = "1.0"
    description = ("Pre-rendered VLN trajectories (annotations.json + images/<episode>/rgb/*.jpg), "
                   "frames as images.primary")

    @classmethod
    def sniff(cls, input_path: str) -> bool:
        try:
            src = Source(input_path)
            return src.is_file(posixpath.join(src.root, ANNOTATIONS)) and src.is_dir(posixpath.join(src.root, "images"))
        except Exception:
            return False

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        super().__init__(input_path, options)
        self.src = src = Source(input_path)
        self.ann_path = posixpath.join(src.root, ANNOTATIONS)
        if not src.is_file(self.ann_path):
            raise InputError(f"{input_path}: no {ANNOTATIONS} (expected a pre-rendered VLN folder)")
        (self.embodiment, self.forward_m, self.turn_rad, self.pitch_rad,
         self.allowed) = habitat_steps(self.options.extra.get("turn_deg", "15"), self.embodiments)
        self.prompt = prompt_for(self.embodiments.get(self.embodiment))
        folder = safe_name(posixpath.basename(src.root.rstrip("/")) or "data").lower()
        self.dataset = str(self.options.extra.get("dataset") or f"vln_frames_{folder}")
        self.split = safe_name(self.options.split) if self.options.split else "train"
        per = str(self.options.extra.get("per_instruction", "true")).lower()
        self.per_instruction = per not in ("0", "false", "no", "off")
        self._entries: object = None

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

    # -- sources ----------------------------------------------------------------------------
    def _load(self):
        if self._entries is None:
            try:
                data = self.src.read_json(self.ann_path)
                self._entries = data if isinstance(data, list) else CorruptJson(
                    f"{ANNOTATIONS}: expected a list of trajectories, got {type(data).__name__}")
            except EpisodeError as err:
                self._entries = err
            except UnicodeDecodeError as err:
                self._entries = CorruptJson(f"{ANNOTATIONS}: not UTF-8 ({err})")
        return self._entries

    def _frames(self, entry: dict) -> list[str]:
        rel = safe_relpath(entry.get("video"))
        folder = posixpath.join(self.src.root, rel, "rgb")
        if not self.src.is_dir(folder):
            raise MissingFrames(f"no frame folder {rel}/rgb")
        names = [i for i in self.src.listdir(folder)
                 if i.type.name == "File" and i.base_name.lower().endswith(_IMAGE_EXT)]
        return [i.path for i in sorted(names, key=lambda i: _frame_order(i.base_name))]

    def _instructions(self, entry: dict) -> list[str]:
        ins = entry.get("instructions", entry.get("instruction"))
        if isinstance(ins, str):
            return [ins]
        if isinstance(ins, list):
            return [x if isinstance(x, str) else str(x) for x in ins]
        return []

    def plan(self, target_bytes: int) -> list[WorkUnit]:
        entries = self._load()
        size = max(self.src.size(self.ann_path), 1)
        if not isinstance(entries, list) or not entries:
            return [WorkUnit(self.ann_path, self.split, 0, None, size)]
        # Estimate frame bytes from the first few trajectories instead of stat'ing every frame.
        sampled, nbytes = 0, 0
        for entry in entries[:4]:
            try:
                for path in self._frames(entry):
                    nbytes += self.src.size(path)
                    sampled += 1
            except (EpisodeError, AttributeError):
                continue
        per_frame = nbytes / sampled if sampled else 20_000
        costs = []
        for entry in entries:
            acts = entry.get("actions") if isinstance(entry, dict) else None
            copies = max(1, len(self._instructions(entry))) if (self.per_instruction and isinstance(entry, dict)) else 1
            costs.append(int(per_frame * (len(acts) if isinstance(acts, list) else 1) * copies) + 1)
        units, start, acc = [], 0, 0
        for i, c in enumerate(costs):
            if acc and acc + c > target_bytes:
                units.append(WorkUnit(self.ann_path, self.split, start, i, acc))
                start, acc = i, 0
            acc += c
        units.append(WorkUnit(self.ann_path, self.split, start, None, acc))
        return units

    # -- reading ----------------------------------------------------------------------------
    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        entries = self._load()
        base = f"{self.dataset}/{unit.split}"
        if isinstance(entries, EpisodeError):
            yield Rejected(f"{base}/{ANNOTATIONS}", entries.code, str(entries), unit.source)
            return
        stop = len(entries) if unit.stop is None else min(unit.stop, len(entries))
        for index in range(unit.start, stop):
            entry = entries[index]
            eid = entry.get("id", index) if isinstance(entry, dict) else index
            stem = f"{base}/{safe_name(eid)}"
            instrs = self._instructions(entry) if isinstance(entry, dict) else []
            keys = ([f"{stem}_{k}" for k in range(len(instrs))] if self.per_instruction and instrs else [stem])
            try:
                if not isinstance(entry, dict):
                    raise FeatureMismatch(f"entry {index} is not an object")
                ids, appended = self._actions(entry)
                frames = self._frames(entry)
                if len(frames) not in (len(ids), len(ids) + (0 if appended else 1)):
                    raise MissingFrames(f"{len(frames)} frames in {entry.get('video')}/rgb for {len(ids)} decisions "
                                        f"({len(entry['actions'])} action entries incl. the leading -1)")
                images = [self.src.read_bytes(p) for p in frames[: len(ids)]]
            except EpisodeError as err:
                acts = entry.get("actions") if isinstance(entry, dict) else None
                steps = len(acts) if isinstance(acts, list) else 0
                for key in keys:
                    yield Rejected.from_error(key, err, f"{unit.source}#{index}", steps)
                continue
            except OSError as err:
                for key in keys:
                    yield Rejected(key, MissingFrames.code, f"cannot read frames: {err}", f"{unit.source}#{index}")
                continue
            poses = replay_discrete((0.0, 0.0), 0.0, ids.tolist(), self.forward_m, self.turn_rad)[:-1]
            cmd = discrete_commands(ids, self.forward_m, self.turn_rad, self.pitch_rad)
            extra = finite_or_none({k: entry[k] for k in entry if k not in ("actions",)})
            extra.update({"stop_appended": appended, "frames": len(images),
                          "frame_files": [posixpath.basename(p) for p in frames[: len(ids)]]})
            texts = instrs if (self.per_instruction and instrs) else [instrs[0] if instrs else ""]
            for k, (key, text) in enumerate(zip(keys, texts, strict=True)):
                yield nav_episode(
                    dataset=self.dataset, episode_id=key, embodiment=self.embodiment, prompt=self.prompt,
                    poses=poses, commands=cmd, action_raw=ids[:, None], state_raw=np.zeros((len(ids), 0)),
                    with_state=False, instruction=text,
                    instructions=[text] if self.per_instruction else instrs,
                    language=str(entry.get("language") or "en"),
                    images={"primary": images}, split=unit.split, source_file=unit.source, source_index=index,
                    extra=dict(extra, instruction_index=k) if self.per_instruction else extra)

    def _actions(self, entry: dict) -> tuple[np.ndarray, bool]:
        """The decision ids (one per row) and whether the closing STOP was appended."""
        acts = entry.get("actions")
        if not isinstance(acts, list) or not acts or not all(isinstance(a, int) for a in acts):
            raise FeatureMismatch("actions must be a non-empty list of integers")
        if acts[0] != -1:
            raise FeatureMismatch(f"actions must start with -1 (the frame-0 placeholder), got {acts[0]}")
        moves = np.array(acts[1:], np.int64)
        bad = sorted(set(moves.tolist()) - self.allowed)
        if bad:
            raise UnknownAction(f"action ids {bad} not in {sorted(self.allowed)}")
        early = np.nonzero(moves[:-1] == STOP)[0]
        if len(early):
            raise MissingStop(f"STOP at action {int(early[0]) + 1} of {len(moves)}, before the end")
        if len(moves) and moves[-1] == STOP:
            return moves, False
        return np.concatenate([moves, [STOP]]).astype(np.int64), True
