"""``robotwin``: RoboTwin episodes in three layouts, sniffed per source.

(a) **2.0 HDF5** (``data/<task>/<cfg>/data/episode{N}.hdf5``): ``observation/<cam>/{rgb (JPEG bytes in a
    fixed-width NUL-padded dataset, written by ``cv2.imencode`` from RGB arrays, i.e. stored
    BGR-swapped), intrinsic_cv, extrinsic_cv}``, ``joint_action/{left_arm, left_gripper, right_arm,
    right_gripper, vector}`` (absolute joint positions recorded each frame; grippers in [0, 1]),
    ``endpose/*``; instructions in ``<cfg>/instructions/episode{N}.json`` (``seen``/``unseen``).
(b) **XPolicyLab v1.0 HDF5**: ``data_format_version``, ``instructions`` (JSON list),
    ``additional_info/frequency``, ``state/{left,right}_{arm_joint_states, ee_joint_states, ee_poses}``,
    ``action/*`` (one frame ahead of ``state``), ``vision/<cam>/{colors, ...}``.
(c) **1.0 per-frame pickles** (``episode{N}/{i}.pkl``): unpickling runs code, so they are refused
    (``untrusted_pickle``) unless ``--opt trust_pickle=true``.
"""
from __future__ import annotations

import json
import pickle
import re
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from vlaflow.media.images import check_encoded, encode_frames
from vlaflow.schemas import EpisodeError, FeatureMismatch
from vlaflow.schemas.names import natural_key, safe_component

from ..base import ReadItem, WorkUnit, option
from .common import EpisodeEntry, SimConverter, concat_raw, raw_key_names, spec_named, specialize, words_from_name
from .errors import LengthMismatch, UntrustedPickle
from .hdf5 import SourceFile, attr_str, open_h5
from .images import fix_opencv_jpegs, strip_padding

ROLE_OF_CAMERA = {"head_camera": "primary", "camera_head": "primary", "cam_high": "primary",
                  "front_camera": "secondary", "left_camera": "wrist_left", "cam_left_wrist": "wrist_left",
                  "right_camera": "wrist_right", "cam_right_wrist": "wrist_right"}
ARM_PARTS = ("left_arm", "left_gripper", "right_arm", "right_gripper")
XPL_PARTS = ("left_arm_joint_states", "left_ee_joint_states", "right_arm_joint_states", "right_ee_joint_states")


def camera_roles(names) -> dict[str, str]:
    """camera name → role: known names first, then by 'left'/'right'/'head' in the name."""
    out: dict[str, str] = {}
    used = set()
    rest = []
    for n in sorted(names, key=natural_key):
        role = ROLE_OF_CAMERA.get(n)
        if role and role not in used:
            out[n] = role
            used.add(role)
        else:
            rest.append(n)
    for n in rest:
        low = n.lower()
        for key, role in (("head", "primary"), ("high", "primary"), ("front", "secondary"),
                          ("left", "wrist_left"), ("right", "wrist_right"), ("", "secondary"), ("", "tertiary")):
            if key in low and role not in used:
                out[n] = role
                used.add(role)
                break
    return out


def episode_number(name: str) -> int:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else 0


class RoboTwinConverter(SimConverter):
    name = "robotwin"
    version = "1.0"
    description = "RoboTwin 2.0 HDF5, XPolicyLab v1.0 HDF5 and 1.0 per-frame pickles (behind trust_pickle)"
    layouts = ("robotwin2", "robotwin_xpl", "robotwin_pkl")

    @dataclass(frozen=True)
    class Options(SimConverter.Options):
        trust_pickle: bool = option(False, "read RoboTwin 1.0 per-frame pickles (unpickling runs code: trusted "
                                           "sources only)")

    def setup(self, mine: list[SourceFile]) -> None:
        counts = {k: sum(f.layout == k for f in mine) for k in self.layouts}
        main = max(self.layouts, key=lambda k: counts[k])
        self.main_layout = main
        self.trust_pickle = self.opts.trust_pickle
        self.specs = {"robotwin2": spec_named("robotwin2"), "robotwin_pkl": spec_named("robotwin2"),
                      "robotwin_xpl": spec_named("robotwin_xpolicylab")}
        if self.options.spec is not None:
            user = self.spec_for_user(self.specs[main])
            self.specs = {k: user for k in self.specs}
        self.spec = self.specs[main]
        self.embodiment_id = self.spec.embodiment
        self.fps = self.spec.fps
        self.dataset, self.task = self._names(next((f for f in mine if Path(f.path).parent.name == "data"), mine[0]))
        self.cameras: dict[str, str] = {}
        self.image_transform = "none"
        widths = {}
        first = mine[0]
        if main in ("robotwin2", "robotwin_xpl"):
            first = next(f for f in mine if f.layout == main)
            try:
                with open_h5(first.path) as f:
                    if main == "robotwin2":
                        cams = [c for c in f["observation"] if "rgb" in f["observation"][c]] if "observation" in f else []
                        self.cameras = {r: f"observation/{c}" for c, r in camera_roles(cams).items()}
                        ja = f["joint_action"]
                        widths = {k: int(np.prod(ja[k].shape[1:])) if ja[k].ndim > 1 else 1 for k in ja}
                        enc = any(f["observation"][c]["rgb"].dtype.kind in "SO" for c in cams)
                        self.image_transform = "bgr_to_rgb" if enc and self.cameras else "none"
                    else:
                        cams = [c for c in f["vision"] if "colors" in f["vision"][c]] if "vision" in f else []
                        self.cameras = {r: f"vision/{c}" for c, r in camera_roles(cams).items()}
                        freq = _xpl_frequency(f)
                        if freq:
                            self.fps = freq
                        widths = {k: int(np.prod(f["action"][k].shape[1:])) if f["action"][k].ndim > 1 else 1
                                  for k in f["action"]}
            except EpisodeError:
                pass
        elif main == "robotwin_pkl":
            self.notes.append("1.0 per-frame pickles: " + ("read (trust_pickle=true)" if self.trust_pickle else
                              "refused without --opt trust_pickle=true (pickle executes code)"))
        if main == "robotwin2":
            self.action_raw_keys = raw_key_names([("joint_action/vector", widths.get("vector", 14))])
            self.state_raw_keys = raw_key_names([("joint_action/vector", widths.get("vector", 14)),
                                                 ("endpose/left_endpose", 7), ("endpose/left_gripper", 1),
                                                 ("endpose/right_endpose", 7), ("endpose/right_gripper", 1)])
        elif main == "robotwin_xpl":
            self.action_raw_keys = raw_key_names([(f"action/{k}", widths.get(k, 0)) for k in XPL_PARTS
                                                  if k in widths] + [(f"action/{k}", w) for k, w in sorted(widths.items())
                                                                     if k not in XPL_PARTS])
            self.state_raw_keys = raw_key_names([(f"state/{k}", 0) for k in XPL_PARTS + ("left_ee_poses", "right_ee_poses")])
        else:
            self.action_raw_keys = ["joint_action/vector[14]"]
            self.state_raw_keys = ["joint_action/vector[14]"]
        arm = widths.get("left_arm") or widths.get("left_arm_joint_states")
        if arm and arm != 6 and not self.opts.embodiment:
            self._warnings.append(f"{arm} joints per arm, but the default embodiment aloha_agilex has 6: pass "
                                  "--opt embodiment=<id> (and --embodiment FILE) for this robot")
        self.notes.append("source layout(s): " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
        self.notes.append("instructions: seen + unseen all kept in the episodes table; each row takes one of the "
                          "seen list, cycling from a position fixed by a CRC32 of the episode id")

    def _names(self, sf: SourceFile) -> tuple[str, str]:
        """robotwin_<task> when the input is one task's folder (data/<task>/<cfg>/data/episodeN.hdf5)."""
        p = Path(sf.path)
        task = ""
        if p.parent.name == "data" and p.parent.parent.parent != p.parent.parent:
            task = p.parent.parent.parent.name
        inp = Path(self.input_path).resolve()
        if task and (str(inp).startswith(str(p.parent.parent.parent.resolve())) or inp == p.resolve()):
            return safe_component(f"robotwin_{task}"), task
        return "robotwin", task or p.parent.name

    # -- work units ---------------------------------------------------------------------------------
    def list_episodes(self, sf: SourceFile) -> list[EpisodeEntry]:
        path = Path(sf.path)
        idx = episode_number(path.stem if path.is_file() else path.name)
        if sf.layout == "robotwin_pkl":
            n = sum(1 for c in path.iterdir() if c.suffix == ".pkl" and c.stem.isdigit())
            size = sum(c.stat().st_size for c in path.iterdir() if c.is_file())
            return [EpisodeEntry(self.default_split, "", idx, max(size, 1), n)]
        with open_h5(sf.path) as f:
            if sf.layout == "robotwin2":
                steps = int(f["joint_action/vector"].shape[0]) if "joint_action/vector" in f else 0
            elif sf.layout == "robotwin_xpl":
                steps = int(f["state/left_arm_joint_states"].shape[0]) if "state/left_arm_joint_states" in f else 0
            else:
                from .errors import UnrecognizedLayout

                raise UnrecognizedLayout(f"{sf.rel}: not a RoboTwin episode")
        return [EpisodeEntry(self.default_split, "", idx, max(path.stat().st_size, 1), steps)]

    # -- read ---------------------------------------------------------------------------------------
    def read_unit(self, sf: SourceFile, unit: WorkUnit, entries: list[EpisodeEntry]) -> Iterator[ReadItem]:
        for e in entries:
            fn = {"robotwin2": self._read_v2, "robotwin_xpl": self._read_xpl,
                  "robotwin_pkl": self._read_pkl}.get(sf.layout or "", self._read_v2)
            yield self.guarded(sf, e, fn, sf, e)

    def _instructions(self, sf: SourceFile, key: str, t: int, seen=None, unseen=None):
        path = Path(sf.path)
        stem = path.stem if path.is_file() else path.name
        src = "instructions_json"
        if seen is None and unseen is None:
            for cand in (path.parent.parent / "instructions" / f"{stem}.json",
                         path.parent / "instructions" / f"{stem}.json", path.with_suffix(".json")):
                if cand.is_file():
                    try:
                        d = json.loads(cand.read_text())
                    except (OSError, ValueError) as err:
                        raise FeatureMismatch(f"{cand.name}: instructions are not JSON ({err})") from None
                    if isinstance(d, list):
                        seen, unseen = d, []
                    elif isinstance(d, dict):
                        seen, unseen = d.get("seen", []), d.get("unseen", [])
                    break
        else:
            src = "file"
        seen = [str(s) for s in (seen or []) if str(s).strip()]
        unseen = [str(s) for s in (unseen or []) if str(s).strip()]
        pool = seen or unseen
        if not pool:
            text = words_from_name(self.task) if self.task else "complete the task"
            return text, [text], {"instruction_source": "synthesized_from_task_name"}
        start = zlib.crc32(key.encode()) % len(pool)
        per_row = [pool[(start + i) % len(pool)] for i in range(t)]
        allx = list(dict.fromkeys(seen + unseen))
        return (per_row[0] if len(pool) == 1 else per_row), allx, {
            "instruction_source": src, "instructions_seen": seen, "instructions_unseen": unseen}

    def _arm_steps(self, parts: dict, vector: np.ndarray, t: int) -> dict:
        """joint/left_arm [T, n], joint/left_gripper [T, 1], ... from the named parts (or the vector)."""
        steps = {}
        if all(k in parts for k in ARM_PARTS):
            for k in ARM_PARTS:
                steps[f"joint/{k}"] = np.asarray(parts[k], dtype=np.float64).reshape(t, -1)
        elif vector.shape[1] == 14:  # aloha layout: [left 6, left gripper, right 6, right gripper]
            steps.update({"joint/left_arm": vector[:, 0:6], "joint/left_gripper": vector[:, 6:7],
                          "joint/right_arm": vector[:, 7:13], "joint/right_gripper": vector[:, 13:14]})
        else:
            raise FeatureMismatch(f"joint_action has no left/right parts and a {vector.shape[1]}-D vector "
                                  "(expected the 14-D aloha layout)")
        return steps

    def _read_v2(self, sf: SourceFile, e: EpisodeEntry):
        with open_h5(sf.path) as f:
            if "joint_action" not in f or "vector" not in f["joint_action"]:
                raise FeatureMismatch("no joint_action/vector")
            ja = f["joint_action"]
            vector = np.asarray(ja["vector"][()], dtype=np.float64)
            if vector.ndim != 2:
                raise FeatureMismatch(f"joint_action/vector has shape {vector.shape}")
            t = len(vector)
            parts = {k: ja[k][()] for k in ARM_PARTS if k in ja}
            for k, v in parts.items():
                if len(v) != t:
                    raise LengthMismatch(f"joint_action/{k} has {len(v)} steps, joint_action/vector {t}")
            steps = self._arm_steps(parts, vector, t)
            state_raw_parts = [ja["vector"][()]]
            if "endpose" in f:
                for k in ("left_endpose", "left_gripper", "right_endpose", "right_gripper"):
                    if k in f["endpose"]:
                        v = f["endpose"][k][()]
                        if len(v) != t:
                            raise LengthMismatch(f"endpose/{k} has {len(v)} steps, joint_action/vector {t}")
                        steps[f"endpose/{k}"] = np.asarray(v, dtype=np.float64).reshape(t, -1)
                        state_raw_parts.append(v)
            key = self.episode_key(sf, e.split, e.name)
            images = {}
            transforms = set()
            for role, cam_key in self.cameras.items():
                if cam_key not in f or "rgb" not in f[cam_key]:
                    images[role] = None
                    continue
                ds = f[cam_key]["rgb"]
                if len(ds) != t:
                    raise LengthMismatch(f"{cam_key}/rgb has {len(ds)} frames, joint_action/vector {t} steps")
                if ds.dtype.kind in "SO":
                    images[role] = fix_opencv_jpegs(strip_padding(ds[()]), f"{cam_key}/rgb")
                    transforms.add("bgr_to_rgb")
                else:
                    images[role] = encode_frames(ds[()], self.image_format, f"{cam_key}/rgb")
            instr, allx, iextra = self._instructions(sf, key, t)
        spec = specialize(self.specs["robotwin2"], steps.keys())
        extra = {"source_file": sf.rel, "layout": "robotwin2", "task": self.task,
                 "image_transform": "+".join(sorted(transforms)) or "none", **iextra}
        return self.assemble(sf=sf, entry=e, spec=spec, steps=steps, t=t, action_raw=concat_raw([vector], t),
                             state_raw=concat_raw(state_raw_parts, t), images=images, instruction=instr,
                             instructions=allx, extra=extra)

    def _read_xpl(self, sf: SourceFile, e: EpisodeEntry):
        with open_h5(sf.path) as f:
            for g in ("state", "action"):
                if g not in f:
                    raise FeatureMismatch(f"XPolicyLab file without '{g}/'")
            if "left_arm_joint_states" not in f["state"]:
                raise FeatureMismatch("no state/left_arm_joint_states")
            t = int(f["state/left_arm_joint_states"].shape[0])
            steps = {}
            state_raw_parts = []
            for k in XPL_PARTS + ("left_ee_poses", "right_ee_poses"):
                if k in f["state"]:
                    v = f["state"][k][()]
                    if len(v) != t:
                        raise LengthMismatch(f"state/{k} has {len(v)} steps, state/left_arm_joint_states {t}")
                    steps[f"state/{k}"] = np.asarray(v, dtype=np.float64).reshape(t, -1)
                    state_raw_parts.append(v)
            names = [k for k in XPL_PARTS if k in f["action"]] + sorted(k for k in f["action"] if k not in XPL_PARTS)
            raw_parts = []
            last_invalid = False
            for k in names:
                stored = f["action"][k][()]
                v = np.asarray(stored, dtype=np.float64).reshape(len(stored), -1)
                if len(v) == t - 1:  # actions stored without the undefined last one
                    v = np.concatenate([v, np.zeros((1, v.shape[1]))], axis=0)
                    last_invalid = True
                elif len(v) != t:
                    raise LengthMismatch(f"action/{k} has {len(v)} steps, state/* {t}")
                raw_parts.append(np.concatenate([np.asarray(stored).reshape(len(stored), -1).astype(np.float32),
                                                 np.zeros((t - len(stored), v.shape[1]), np.float32)]))
                steps[f"action/{k}"] = v
            action_raw = concat_raw(raw_parts, t)
            instructions = _xpl_instructions(f)
            key = self.episode_key(sf, e.split, e.name)
            images = {}
            for role, cam_key in self.cameras.items():
                if cam_key not in f or "colors" not in f[cam_key]:
                    images[role] = None
                    continue
                ds = f[cam_key]["colors"]
                if len(ds) != t:
                    raise LengthMismatch(f"{cam_key}/colors has {len(ds)} frames, state/* {t} steps")
                if ds.dtype.kind in "SO":
                    frames = strip_padding(ds[()])
                    check_encoded(frames, f"{cam_key}/colors")
                    images[role] = frames
                else:
                    images[role] = encode_frames(ds[()], self.image_format, f"{cam_key}/colors")
            instr, allx, iextra = self._instructions(sf, key, t, seen=instructions, unseen=[])
            fmt = attr_str(f, "data_format_version") or _dataset_str(f, "data_format_version")
        spec = specialize(self.specs["robotwin_xpl"], steps.keys())
        extra = {"source_file": sf.rel, "layout": "robotwin_xpl", "data_format_version": fmt, **iextra}
        return self.assemble(sf=sf, entry=e, spec=spec, steps=steps, t=t, action_raw=action_raw,
                             state_raw=concat_raw(state_raw_parts, t), images=images, instruction=instr,
                             instructions=allx, extra=extra, last_invalid=last_invalid)

    def _read_pkl(self, sf: SourceFile, e: EpisodeEntry):
        path = Path(sf.path)
        files = sorted((c for c in path.iterdir() if c.suffix == ".pkl" and c.stem.isdigit()), key=lambda c: int(c.stem))
        if not self.trust_pickle:
            raise UntrustedPickle(f"{sf.rel}: {len(files)} per-frame pickle(s) not read: unpickling runs code; "
                                  "pass --opt trust_pickle=true only for a source you trust")
        expected = list(range(len(files)))
        if [int(c.stem) for c in files] != expected:
            raise LengthMismatch(f"{sf.rel}: frame files are not 0..{len(files) - 1} (a frame is missing)")
        frames = []
        for c in files:
            with open(c, "rb") as fh:
                frames.append(pickle.load(fh))  # noqa: S301 - only behind --opt trust_pickle=true
        t = len(frames)
        if not t:
            raise FeatureMismatch(f"{sf.rel}: no frames")

        def vec(fr):
            ja = fr.get("joint_action")
            if isinstance(ja, dict):
                return np.asarray(ja["vector"], dtype=np.float64).reshape(-1)
            return np.asarray(ja, dtype=np.float64).reshape(-1)

        try:
            vector = np.stack([vec(fr) for fr in frames])
        except (KeyError, TypeError, ValueError) as err:
            raise FeatureMismatch(f"{sf.rel}: frames lack a joint_action vector ({err})") from None
        parts = {}
        if isinstance(frames[0].get("joint_action"), dict) and all(k in frames[0]["joint_action"] for k in ARM_PARTS):
            parts = {k: np.stack([np.asarray(fr["joint_action"][k], np.float64).reshape(-1) for fr in frames])
                     for k in ARM_PARTS}
        steps = self._arm_steps(parts, vector, t)
        obs0 = frames[0].get("observation", {}) or {}
        cams = [c for c in obs0 if isinstance(obs0[c], dict) and "rgb" in obs0[c]]
        images = {}
        for cam, role in camera_roles(cams).items():
            arr = np.stack([np.asarray(fr["observation"][cam]["rgb"]) for fr in frames])
            if arr.dtype != np.uint8:
                arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
            images[role] = encode_frames(arr[..., :3], self.image_format, f"{sf.rel} {cam}")
        key = self.episode_key(sf, e.split, e.name)
        instr, allx, iextra = self._instructions(sf, key, t)
        spec = specialize(self.specs["robotwin_pkl"], steps.keys())
        extra = {"source_file": sf.rel, "layout": "robotwin_pkl", "task": self.task, **iextra}
        return self.assemble(sf=sf, entry=e, spec=spec, steps=steps, t=t, action_raw=concat_raw([vector], t),
                             state_raw=concat_raw([vector], t), images=images, instruction=instr,
                             instructions=allx, extra=extra)


def _dataset_str(f, key: str) -> str:
    if key not in f:
        return ""
    v = f[key][()]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.size == 1:
        x = v.reshape(-1)[0]
        return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
    return str(v)


def _xpl_instructions(f) -> list[str]:
    text = attr_str(f, "instructions") or _dataset_str(f, "instructions")
    if not text and "instructions" in f and hasattr(f["instructions"], "shape"):
        return [x.decode() if isinstance(x, bytes) else str(x) for x in np.asarray(f["instructions"][()]).reshape(-1)]
    if not text:
        return []
    try:
        v = json.loads(text)
    except ValueError:
        return [text]
    return [str(x) for x in v] if isinstance(v, list) else [str(v)]


def _xpl_frequency(f):
    for where in (f.get("additional_info"),):
        if where is not None and "frequency" in where:
            v = np.asarray(where["frequency"][()]).reshape(-1)
            if v.size and float(v[0]) > 0:
                return Fraction(str(float(v[0]))).limit_denominator(1001)
    v = f.attrs.get("frequency")
    return None if v is None else Fraction(str(float(v))).limit_denominator(1001)
