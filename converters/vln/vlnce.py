"""``vlnce``: VLN-CE episodes in continuous Habitat scenes (R2R_VLNCE_v1-3, RxR_VLNCE_v0).

``--input`` is a split folder holding ``<split>.json.gz`` (``{episodes, instruction_vocab}``) and
``<split>_gt.json.gz`` (``{"<episode_id>": {locations, actions, forward_steps}}``), or a folder of such
split folders. RxR-CE files are ``<split>_guide[_gt].json.gz`` / ``<split>_follower[_gt].json.gz``.

One row per action (``len(actions)`` rows, the last one STOP): ``action_raw`` = the Habitat action id
(0 STOP, 1 MOVE_FORWARD 0.25 m, 2 TURN_LEFT, 3 TURN_RIGHT by 15 deg for R2R-CE / 30 deg for RxR-CE,
4 LOOK_UP, 5 LOOK_DOWN). The pose before each action: its position is the GT ``locations`` entry
(which grows only on MOVE_FORWARD), its yaw replays the turns from ``start_rotation``. The v1-3 start
yaw is the R2R heading negated and snapped to 30 deg: it is recorded as is, not "fixed".
"""
from __future__ import annotations

import math
import posixpath
import re
from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np
from vlaflow.schemas import DatasetInfo, EpisodeError, FeatureMismatch, InputError
from vlaflow.schemas.names import safe_component

from ..base import Converter, ConverterOptions, ReadItem, Rejected, WorkUnit, option
from ..units import file_units
from .errors import CorruptJson, MissingGroundTruth
from .files import Source
from .geometry import habitat_quat_to_yaw, habitat_to_world, replay_discrete, wrap_angle, yaw_to_habitat_quat
from .pathconv import LICENSE, finite_or_none
from .rows import (DECISION_FPS, MOVE_FORWARD, TASK_FAMILY, TURN_LEFT, TURN_RIGHT, discrete_commands, end_with_stop,
                   habitat_steps, nav_arrays)

EPISODE_FILE = re.compile(r"(?P<split>[A-Za-z0-9_-]+?)(?:_(?P<role>guide|follower))?\.json\.gz")
ACTION_RAW_KEYS = ["action_id[1]"]
STATE_RAW_KEYS = ["position_habitat[3]", "rotation_habitat_xyzw[4]"]


@dataclass(frozen=True)
class EpisodeFile:
    """A unit's payload: its episode file's ground truth, and whose annotations it holds (RxR-CE)."""

    gt: str
    role: str  # "" (R2R-CE), guide or follower


def _episode_files(src: Source, folder: str) -> list[tuple[str, str, str, str]]:
    """(split, role, episodes path, gt path or '') for the episode files directly in ``folder``."""
    out = []
    for i in src.listdir(folder):
        if i.type.name != "File" or i.base_name.endswith("_gt.json.gz"):
            continue
        m = EPISODE_FILE.fullmatch(i.base_name)
        if not m:
            continue
        gt = posixpath.join(folder, i.base_name[: -len(".json.gz")] + "_gt.json.gz")
        out.append((m.group("split"), m.group("role") or "", i.path, gt if src.is_file(gt) else ""))
    return out


class VLNCEConverter(Converter):
    name = "vlnce"
    version = "1.0"
    description = "VLN-CE (R2R/RxR in continuous Habitat): GT action sequences replayed into poses and waypoints"

    @dataclass(frozen=True)
    class Options:
        turn_deg: Literal[15, 30] | None = option(None, "turn step in degrees (default 30 for RxR-CE files, else 15)")
        dataset: str | None = option(None, "dataset name (default vlnce_r2r / vlnce_rxr)")

    @classmethod
    def sniff(cls, input_path: str) -> bool:
        try:
            src = Source(input_path)
            if not src.is_dir(src.root):
                return False
            folders = [src.root] + [i.path for i in src.listdir(src.root) if i.type.name == "Directory"]
            return any(gt for f in folders for *_, gt in _episode_files(src, f))
        except Exception:
            return False

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        super().__init__(input_path, options)
        self.src = src = Source(input_path)
        if not src.is_dir(src.root):
            raise InputError(f"{input_path}: expected a VLN-CE split folder (<split>.json.gz + <split>_gt.json.gz)")
        files = _episode_files(src, src.root)
        if not files:
            for i in src.listdir(src.root):
                if i.type.name == "Directory":
                    files += _episode_files(src, i.path)
        no_gt = [posixpath.basename(p) for _, _, p, gt in files if not gt]
        files = [f for f in files if f[3]]
        if not files:
            raise InputError(f"{input_path}: no VLN-CE episode file with its _gt.json.gz beside it"
                             + (f" (found without ground truth: {', '.join(no_gt)})" if no_gt else ""))
        if self.options.split:
            wanted = [s.strip() for s in self.options.split.split(",") if s.strip()]
            have = sorted({f[0] for f in files})
            missing = [s for s in wanted if s not in have]
            if missing:
                raise InputError(f"split(s) {missing} not in {input_path}; have {have}")
            files = [f for f in files if f[0] in wanted]
        self.files = sorted(files)
        self._warnings = [f"{n}: no ground truth beside it, skipped" for n in no_gt]
        rxr = any(f[1] for f in self.files)
        (self.embodiment, self.forward_m, self.turn_rad, self.pitch_rad,
         self.allowed) = habitat_steps(self.opts.turn_deg or (30 if rxr else 15), self.embodiments)
        self.dataset = self.opts.dataset or ("vlnce_rxr" if rxr else "vlnce_r2r")
        self._cache: dict[str, object] = {}

    def warnings(self) -> list[str]:
        return list(self._warnings)

    def datasets(self) -> list[DatasetInfo]:
        return [DatasetInfo(
            name=self.dataset, task_family=TASK_FAMILY, embodiment=self.embodiment, fps=DECISION_FPS,
            license="CC BY-NC-SA 3.0 US / Matterport3D Terms of Use (non-commercial)",
            source_uri=f"{self.input_path} (VLN-CE)", converter=self.name, converter_version=self.version,
            action_frame="agent", control_mode="discrete", rotation_repr="quat_xyzw",
            action_raw_keys=ACTION_RAW_KEYS, state_raw_keys=STATE_RAW_KEYS,
            notes=[
                ("world frame: Habitat (y up, -z forward) re-expressed z-up: base.pose = (habitat x, -habitat z, "
                 "yaw counter-clockwise from +x) = MP3D x, y; base.z = habitat y (navmesh floor)"),
                ("positions are the GT locations (navmesh-snapped, collisions included); yaw replays the turns "
                 "from start_rotation; nav.command holds the nominal step (forward_m, turn) of the action id"),
                "R2R_VLNCE_v1-3 start_rotation = -R2R heading snapped to 30 deg multiples (kept as is)",
                "one row per action at a nominal 1 Hz (no clock in the source); the last row is STOP",
                LICENSE,
            ],
        )]

    # -- sources ----------------------------------------------------------------------------
    def _json(self, path: str):
        if path not in self._cache:
            self._cache[path] = self.src.json_or_error(path)
        return self._cache[path]

    def _episodes(self, path: str):
        data = self._json(path)
        if isinstance(data, EpisodeError):
            return data
        eps = data.get("episodes") if isinstance(data, dict) else None
        if not isinstance(eps, list):
            return CorruptJson(f"{posixpath.basename(path)}: no 'episodes' list")
        return eps

    def _gt(self, path: str):
        data = self._json(path)
        if not isinstance(data, (dict, EpisodeError)):
            return CorruptJson(f"{posixpath.basename(path)}: expected an object keyed by episode id")
        return data

    def work_units(self, target_bytes: int) -> list[WorkUnit]:
        units = []
        for fi, (split, role, path, gt) in enumerate(self.files):
            eps = self._episodes(path)
            units += file_units(path, split, max(self.src.size(path) + self.src.size(gt), 1),
                                len(eps) if isinstance(eps, list) else 0, target_bytes, file_index=fi,
                                payload=EpisodeFile(gt, role))
        return units

    # -- reading ----------------------------------------------------------------------------
    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        gt_path, role = unit.payload.gt, unit.payload.role
        base = f"{self.dataset}/{unit.split}"
        eps = self._episodes(unit.source)
        if isinstance(eps, EpisodeError):
            yield Rejected(f"{base}/{safe_component(posixpath.basename(unit.source))}", eps.code, str(eps), unit.source)
            return
        gt = self._gt(gt_path)
        stop = len(eps) if unit.stop is None else min(unit.stop, len(eps))
        for index in range(unit.start, stop):
            ep = eps[index]
            eid = ep.get("episode_id") if isinstance(ep, dict) else None
            key = f"{base}/{safe_component(eid) if eid is not None else f'#{index}'}"
            if role == "follower":
                key += "_follower"
            g = None
            try:
                if eid is None:
                    raise FeatureMismatch(f"episode {index} has no episode_id")
                if isinstance(gt, EpisodeError):
                    raise type(gt)(f"ground truth {posixpath.basename(gt_path)}: {gt}")
                g = gt.get(str(eid))
                if g is None:
                    raise MissingGroundTruth(f"{posixpath.basename(gt_path)} has no entry for episode {eid}")
                yield self.episode(ep, g, key, unit, index)
            except EpisodeError as err:
                acts = g.get("actions") if isinstance(g, dict) else None
                yield Rejected.from_error(key, err, f"{unit.source}#{index}",
                                          len(acts) if isinstance(acts, list) else 0)

    def episode(self, ep: dict, g: dict, key: str, unit: WorkUnit, index: int):
        try:
            actions = np.array(g["actions"], dtype=np.int64)
            locs = np.array(g["locations"], dtype=np.float64)
            start_rot = [float(v) for v in ep["start_rotation"]]
        except (KeyError, TypeError, ValueError) as err:
            raise FeatureMismatch(f"episode lacks actions/locations/start_rotation: "
                                  f"{type(err).__name__}: {err}") from None
        if actions.ndim != 1 or not len(actions):
            raise FeatureMismatch("actions must be a non-empty list of ids")
        end_with_stop(actions, self.allowed, append=False)
        fwd = actions == MOVE_FORWARD
        n_fwd = int(fwd.sum())
        if locs.ndim != 2 or locs.shape[1] != 3 or len(locs) != n_fwd + 1 or not np.isfinite(locs).all():
            raise FeatureMismatch(f"locations {locs.shape} do not match {n_fwd} MOVE_FORWARD actions + the start")
        if "forward_steps" in g and g["forward_steps"] != n_fwd:
            raise FeatureMismatch(f"forward_steps {g['forward_steps']} != {n_fwd} MOVE_FORWARD actions")
        yaw0 = habitat_quat_to_yaw(start_rot)
        turns = (actions == TURN_LEFT).astype(np.int64) - (actions == TURN_RIGHT).astype(np.int64)
        yaw = wrap_angle(yaw0 + self.turn_rad * np.concatenate([[0], np.cumsum(turns)[:-1]]))
        pos_idx = np.concatenate([[0], np.cumsum(fwd)[:-1]])
        hab = locs[pos_idx]
        world = habitat_to_world(hab)
        poses = np.column_stack([world[:, :2], yaw])
        # Open-loop replay of the nominal steps against the GT locations (navmesh sliding shows here).
        nominal = replay_discrete(world[0, :2], yaw0, actions.tolist(), self.forward_m, self.turn_rad)[:-1]
        err_open = float(np.max(np.hypot(*(nominal[:, :2] - poses[:, :2]).T)))
        moved = np.nonzero(fwd)[0]
        step = habitat_to_world(locs[1:])[:, :2] - world[moved, :2]
        want = self.forward_m * np.column_stack([np.cos(yaw[moved]), np.sin(yaw[moved])])
        err_step = float(np.max(np.hypot(*(step - want).T))) if len(moved) else 0.0
        instr = ep.get("instruction") if isinstance(ep.get("instruction"), dict) else {}
        text = instr.get("instruction_text") or ""
        language = ep.get("language") or instr.get("language") or "en"
        start_pos = ep.get("start_position")
        extra = {k: ep[k] for k in ("episode_id", "trajectory_id", "scene_id", "start_position", "start_rotation",
                                    "goals", "reference_path", "info") if k in ep}
        extra["instruction"] = {k: v for k, v in instr.items() if k != "instruction_tokens"}
        for k in ("language", "annotator_id", "timed_instruction", "instruction_id", "edit_distance"):
            if k in ep:
                extra[k] = ep[k]
        extra.update({
            "start_yaw_deg": round(math.degrees(yaw0), 6),
            "forward_steps": n_fwd,
            "replay_open_loop_max_error_m": round(err_open, 6),
            "replay_step_max_error_m": round(err_step, 6),
        })
        if isinstance(start_pos, list) and len(start_pos) == 3:
            extra["start_offset_m"] = round(float(np.linalg.norm(np.array(start_pos, float) - locs[0])), 6)
        return self.make_episode(
            key, **nav_arrays(poses, discrete_commands(actions, self.forward_m, self.turn_rad, self.pitch_rad),
                              actions[:, None], np.column_stack([hab, yaw_to_habitat_quat(yaw)]), z=world[:, 2]),
            instruction=text, instructions=[text] if text else [], language=str(language), split=unit.split,
            source_file=unit.source, source_index=index, extra=finite_or_none(extra))
