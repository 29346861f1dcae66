"""``robomimic``: robomimic HDF5 and robosuite raw demonstrations (layout detected per file).

- robomimic: ``data`` attrs ``total``, ``env_args`` (JSON); ``data/demo_N/{actions, states, rewards,
  dones, obs/<key>, next_obs/<key>}``; ``mask/<filter>`` lists of demo names (splits/filters).
- robosuite raw (``collect_human_demonstrations``, 1.0-1.5): ``data`` attrs ``env``, ``env_info``
  (JSON), ``repository_version``; ``demo_1..`` with ``states`` and ``actions`` only (+ ``joint_torques``
  in 1.0). Joint positions are recovered from the flattened MuJoCo state through the inline model.

Actions are robosuite controller commands; the controller config in the file says how they scale
(OSC_POSE: clip to [-1, 1], × 0.05 m / 0.5 rad). Images are stored in robosuite's default OpenGL
row order (upside down) unless the file says ``image_convention = opencv``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from vlaflow.media.images import encode_frames, orient
from vlaflow.schemas import FeatureMismatch
from vlaflow.schemas.names import safe_component

from ..base import ReadItem, WorkUnit, option
from ..standardize import DatasetSpec
from .common import EpisodeEntry, SimConverter, concat_raw, raw_key_names, spec_named, specialize, words_from_name
from .errors import LengthMismatch, MissingDataGroup
from .hdf5 import SourceFile, attr_json, attr_str, demo_names, mjcf_qpos_index, open_h5, plain, storage_bytes

SPLIT_MASKS = ("train", "valid", "test")
# Datasets of a demo that the converter reads itself; anything else is "extra" (kept if it aligns).
_CONSUMED = {"actions", "states", "rewards", "dones", "obs", "next_obs", "robot_states"}
_TASK_TEXT = {  # robosuite task names → a readable task description (synthesized: no language in the source)
    "lift": "lift the cube", "stack": "stack the red cube on the green cube",
    "nutassembly": "fit the nuts onto their pegs", "nutassemblysquare": "fit the square nut onto its peg",
    "nutassemblyround": "fit the round nut onto its peg", "pickplace": "put each object into its bin",
    "pickplacecan": "put the can into its bin", "pickplacemilk": "put the milk into its bin",
    "pickplacebread": "put the bread into its bin", "pickplacecereal": "put the cereal into its bin",
    "door": "open the door", "wipe": "wipe the markings off the table",
    "tooluse": "use the tool to pull the cube", "twoarmlift": "lift the pot with both arms",
    "twoarmpeginhole": "insert the peg into the hole", "twoarmhandover": "hand the hammer over from one arm to the other",
    "twoarmtransport": "transport the object between the bins with both arms",
}


def task_text(env_name: str) -> str:
    key = env_name.replace("_", "").replace("-", "").lower()
    return _TASK_TEXT.get(key, words_from_name(env_name) or "complete the task")


class RobosuiteProfile:
    """What one file says about its robots, controllers and rendering (attrs only, cheap)."""

    def __init__(self, f, layout: str):
        import h5py

        if "data" not in f or not isinstance(f["data"], h5py.Group):
            raise MissingDataGroup("no top-level 'data' group (not a robomimic/robosuite demo file)")
        data = f["data"]
        self.layout = layout
        if "env_args" in data.attrs:
            args = attr_json(data, "env_args")
            kw = args.get("env_kwargs", {}) or {}
            self.env_name = str(args.get("env_name") or attr_str(data, "env") or "unknown")
            self.version = str(args.get("env_version", "") or attr_str(data, "repository_version"))
        else:
            args = attr_json(data, "env_info")
            kw = args
            self.env_name = str(args.get("env_name") or attr_str(data, "env") or "unknown")
            self.version = attr_str(data, "repository_version")
        robots = kw.get("robots") or []
        self.robots = [robots] if isinstance(robots, str) else list(robots)
        self.env_configuration = str(kw.get("env_configuration", "default"))
        self.control_freq = kw.get("control_freq", 20) or 20
        self.controllers = self._arm_controllers(kw.get("controller_configs"), max(len(self.robots), 1))
        conv = attr_str(data, "image_convention") or attr_str(data, "macros_image_convention")
        self.image_convention = conv or "opengl"  # robosuite's default macros.IMAGE_CONVENTION
        self.image_convention_recorded = bool(conv)
        names = demo_names(data)
        self.demos = names
        first = data[names[0]] if names else None
        self.action_dim = int(first["actions"].shape[1]) if first is not None and "actions" in first and \
            first["actions"].ndim == 2 else 0
        self.obs_keys = sorted(first["obs"].keys()) if first is not None and "obs" in first else []
        self.widths: dict[str, int] = {}
        if first is not None:
            for k in self.obs_keys:
                ds = first["obs"][k]
                if hasattr(ds, "ndim") and ds.ndim <= 2:
                    self.widths[f"obs/{k}"] = int(np.prod(ds.shape[1:]))
            if "states" in first and first["states"].ndim == 2:
                self.widths["states"] = int(first["states"].shape[1])

    @staticmethod
    def _arm_controllers(cfg, n_arms: int) -> list[dict]:
        if isinstance(cfg, list):
            cfgs = [c if isinstance(c, dict) else {} for c in cfg]
        elif isinstance(cfg, dict):
            cfgs = [cfg] * n_arms
        else:
            cfgs = [{}] * n_arms
        out = []
        for c in cfgs[:n_arms]:
            parts = c.get("body_parts") if isinstance(c, dict) else None
            if isinstance(parts, dict):  # robosuite 1.5 composite controller: the arm is a body part
                c = parts.get("right") or parts.get("left") or next(iter(parts.values()), {})
            out.append(c if isinstance(c, dict) else {})
        while len(out) < n_arms:
            out.append(out[-1] if out else {})
        return out

    @property
    def controller_types(self) -> list[str]:
        return [str(c.get("type", "OSC_POSE")) for c in self.controllers]

    def scale_params(self) -> dict:
        """``arm<i>.pos`` / ``arm<i>.rot`` → osc_scale params from the file's controller config."""
        out = {}
        for i, c in enumerate(self.controllers):
            if not c:
                continue
            for part, sl in (("pos", slice(0, 3)), ("rot", slice(3, 6))):
                p = {}
                for k in ("input_min", "input_max"):
                    if k in c and c[k] is not None:
                        p[k] = _part(c[k], sl)
                for k in ("output_min", "output_max"):
                    if k in c and c[k] is not None:
                        p[k] = _part(c[k], sl)
                if p:
                    out[f"arm{i}.{part}"] = p
        return out

    @property
    def action_frame(self) -> str:
        frames = {str(c.get("input_ref_frame")) for c in self.controllers if c.get("input_ref_frame")}
        if frames:
            return frames.pop() if len(frames) == 1 else "mixed"
        return "world"  # robosuite <= 1.4 OSC works in the world frame


def _part(v, sl: slice):
    if isinstance(v, (list, tuple)):
        return [float(x) for x in list(v)[sl]]
    return float(v)


def pick_spec_name(p: RobosuiteProfile) -> str | None:
    types = set(p.controller_types)
    n = max(len(p.robots), 1)
    if types <= {"OSC_POSE"}:
        if n == 1 and p.action_dim == 7:
            return "robosuite_osc_pose"
        if n == 1 and p.action_dim == 6:
            return "robosuite_osc_pose_nogripper"
        if n == 2 and p.action_dim == 14:
            return "robosuite_twoarm_osc_pose"
    return None


def assign_cameras(obs_keys: list[str], two_arm: bool) -> dict[str, str]:
    cams: dict[str, str] = {}
    free = ["secondary", "tertiary"]
    for k in obs_keys:
        if not k.endswith("_image"):
            continue
        key = f"obs/{k}"
        if k == "agentview_image":
            cams.setdefault("primary", key)
        elif k.startswith("robot0_eye_in_hand"):
            cams.setdefault("wrist_left" if two_arm else "wrist", key)
        elif k.startswith("robot1_eye_in_hand"):
            cams.setdefault("wrist_right", key)
        elif free:
            cams[free.pop(0)] = key
    if "primary" not in cams:  # no agentview: promote the first third-person view
        for role in ("secondary", "tertiary"):
            if role in cams:
                cams["primary"] = cams.pop(role)
                break
    return cams


class RobomimicConverter(SimConverter):
    name = "robomimic"
    version = "1.0"
    description = "robomimic HDF5 and robosuite raw demonstrations (layout detected per file)"
    layouts = ("robomimic", "robosuite_raw")

    @dataclass(frozen=True)
    class Options(SimConverter.Options):
        image_orientation: Literal["flip_vertical", "rotate_180", "none"] | None = option(
            None, "orientation fix of the frames (default: flip_vertical for OpenGL-rendered files)")

    # -- setup --------------------------------------------------------------------------------------
    def setup(self, mine: list[SourceFile]) -> None:
        profiles = []
        for sf in mine:
            try:
                with open_h5(sf.path) as f:
                    profiles.append((sf, RobosuiteProfile(f, sf.layout)))
            except Exception:  # its unit will report it
                continue
            if len(profiles) >= 64:
                break
        if not profiles:
            profiles = [(mine[0], None)]
        self.profile = profiles[0][1]
        self._profiles: dict[str, RobosuiteProfile] = {}
        p = self.profile
        self.setup_dataset(p, mine)
        envs = sorted({q.env_name for _, q in profiles if q is not None})
        if len(envs) > 1 and Path(self.input_path).is_dir():
            kind = self.dataset.split("_", 1)[0]
            self.dataset = safe_component(f"{kind}_{Path(self.input_path).resolve().name.lower()}")
            self.notes.append(f"envs: {', '.join(envs)}")
        self.spec = self.spec_of(p)
        if self.spec.embodiment == "generic":
            desc = "unreadable" if p is None else f"{p.controller_types} with {len(p.robots)} robot(s), " \
                f"{p.action_dim}-D action"
            self._warnings.append(f"no spec for {desc}: ingesting raw actions with the generic embodiment")
        kinds = sorted({self.spec_of(q).embodiment for _, q in profiles if q is not None})
        if len(kinds) > 1:
            self.notes.append(f"files of several embodiments ({', '.join(kinds)}): each episode names its own; "
                              "action_raw widths differ per file")
            self._warnings.append(f"{self.input_path}: files of several embodiments {kinds}; each episode "
                                  f"carries its own (dataset metadata describes {self.spec.embodiment})")
        self.embodiment_id = self.spec.embodiment
        self.fps = p.control_freq if p is not None else self.spec.fps
        self.control_mode = None
        if p is not None:
            types = sorted(set(p.controller_types))
            self.control_mode = (self.spec.conventions.get("control_mode") or "raw") + \
                ("" if types == ["OSC_POSE"] else f" ({'/'.join(types)})")
            self.action_frame = p.action_frame
        two_arm = p is not None and len(p.robots) == 2
        self.cameras = assign_cameras(p.obs_keys, two_arm) if p is not None else {}
        self.image_transform = self.choose_orientation(p) if self.cameras else "none"
        self.action_raw_keys = raw_key_names([("actions", p.action_dim if p else 0)])
        widths = p.widths if p is not None else {}
        self.state_raw_keys = raw_key_names([(k, widths[k]) for k in self.spec.state_raw_keys or [] if k in widths])
        layouts = ", ".join(f"{n} {k}" for k, n in self.layout_counts.items())
        self.notes.append(f"source layout(s): {layouts}; env {p.env_name if p else '?'}, robosuite "
                          f"{(p.version if p else '') or 'version not recorded'}")
        if p is not None and not self.image_transform.startswith("none") and self.cameras:
            self.notes.append(f"image convention {p.image_convention}"
                              + ("" if p.image_convention_recorded else " (not recorded in the file: robosuite's default)"))
        self.notes.append("instruction: none in the source; synthesized from the env name (episode extra "
                          "'instruction_source')")

    def setup_dataset(self, p: RobosuiteProfile | None, mine: list[SourceFile]) -> None:
        kind = "robomimic" if (p is None or p.layout == "robomimic") else "robosuite"
        self.dataset = safe_component(f"{kind}_{p.env_name.lower()}" if p is not None else kind)

    def choose_orientation(self, p: RobosuiteProfile | None) -> str:
        return self.opts.image_orientation or ("flip_vertical" if (p is None or p.image_convention == "opengl")
                                               else "none")

    # -- work units ---------------------------------------------------------------------------------
    def file_profile(self, f, sf: SourceFile) -> RobosuiteProfile:
        if sf.path not in self._profiles:
            self._profiles[sf.path] = RobosuiteProfile(f, sf.layout or "robomimic")
        return self._profiles[sf.path]

    def list_episodes(self, sf: SourceFile) -> list[EpisodeEntry]:
        import h5py

        with open_h5(sf.path) as f:
            if "data" not in f or not isinstance(f["data"], h5py.Group):
                raise MissingDataGroup(f"{sf.rel}: no top-level 'data' group")
            data = f["data"]
            names = demo_names(data)
            masks = self._masks(f)
            wanted = [s.strip() for s in self.options.split.split(",")] if self.options.split else None
            if wanted:
                missing = [w for w in wanted if w not in masks and w != self.default_split]
                if missing and len(self.sources) == 1:
                    from vlaflow.schemas import InputError

                    raise InputError(f"{sf.rel}: no mask(s) {missing}; masks: {sorted(masks) or 'none'}")
            out = []
            unaligned: list[str] = []
            for i, n in enumerate(names):
                split = self._split_of(n, masks, wanted)
                if split is None:
                    continue
                g = data[n]
                steps = int(g["actions"].shape[0]) if "actions" in g else 0
                out.append(EpisodeEntry(split, n, i, storage_bytes(g), steps))
                if not unaligned:
                    unaligned = _unaligned_names(g, steps)
            if unaligned:
                self._warnings.append(
                    f"{sf.rel}: per-demo datasets on their own time axes are not carried as steps (each "
                    f"episode's extra 'unaligned' lists them), e.g. {', '.join(unaligned[:3])}")
            return out

    @staticmethod
    def _masks(f) -> dict[str, set[str]]:
        import h5py

        out = {}
        if "mask" in f and isinstance(f["mask"], h5py.Group):
            for k, ds in f["mask"].items():
                if isinstance(ds, h5py.Dataset):
                    out[k] = {x.decode() if isinstance(x, bytes) else str(x) for x in np.asarray(ds[()]).reshape(-1)}
        return out

    def _split_of(self, name: str, masks: dict, wanted: list[str] | None) -> str | None:
        if wanted:
            for w in wanted:
                if name in masks.get(w, ()) or (w == self.default_split and w not in masks):
                    return safe_component(w)
            return None
        present = [m for m in SPLIT_MASKS if m in masks]
        if not present:
            return self.default_split
        for m in present:
            if name in masks[m]:
                return m
        return "unsplit"

    # -- read ---------------------------------------------------------------------------------------
    def read_unit(self, sf: SourceFile, unit: WorkUnit, entries: list[EpisodeEntry]) -> Iterator[ReadItem]:
        from vlaflow.schemas import EpisodeError

        try:
            f = open_h5(sf.path)
        except EpisodeError as err:
            yield from self.reject_all(sf, entries, err)
            return
        with f:
            try:
                profile = self.file_profile(f, sf)
                masks = self._masks(f)
            except EpisodeError as err:
                yield from self.reject_all(sf, entries, err)
                return
            for e in entries:
                yield self.guarded(sf, e, self.demo_episode, f, profile, masks, sf, e)

    def spec_of(self, p: RobosuiteProfile | None) -> DatasetSpec:
        """The spec for a file's robots and controller (``--spec`` overrides every file)."""
        if self.options.spec is not None:
            return self.spec_for_user(spec_named("robosuite_osc_pose"))
        name = pick_spec_name(p) if p is not None else None
        if name:
            return spec_named(name)
        return DatasetSpec(dataset=self.dataset, embodiment="generic", fps=20, license="MIT",
                           notes=["no vlaflow spec for this controller/arm layout: action/state slots "
                                  "empty; use action_raw"], source="<generic>")

    def file_spec(self, profile: RobosuiteProfile, keys) -> DatasetSpec:
        return specialize(self.spec_of(profile), keys, profile.scale_params())

    def instruction_for(self, f, profile: RobosuiteProfile, sf: SourceFile) -> tuple[str, str]:
        return task_text(profile.env_name), "synthesized_from_env_name"

    def demo_episode(self, f, profile: RobosuiteProfile, masks: dict, sf: SourceFile, e: EpisodeEntry):
        g = f["data"][e.name]
        if "actions" not in g:
            raise FeatureMismatch(f"{e.name}: no 'actions' dataset")
        actions = g["actions"][()]
        if actions.ndim != 2:
            raise FeatureMismatch(f"{e.name}: actions has shape {actions.shape}, expected [T, A]")
        t = int(actions.shape[0])
        base_spec = self.spec_of(profile)
        if actions.shape[1] != profile.action_dim and base_spec.embodiment != "generic":
            raise FeatureMismatch(f"{e.name}: {actions.shape[1]}-D actions, the file's first demo has "
                                  f"{profile.action_dim}-D")
        steps: dict[str, np.ndarray] = {"actions": actions}
        obs = g["obs"] if "obs" in g else None
        image_keys = []
        if obs is not None:
            for k, ds in obs.items():
                if not hasattr(ds, "shape"):
                    continue
                if ds.ndim == 4 and ds.dtype == np.uint8:
                    image_keys.append(k)
                elif ds.ndim <= 2 and ds.dtype.kind in "fiub":
                    steps[f"obs/{k}"] = ds[()]
        states = g["states"][()] if "states" in g else None
        for k, v in [("states", states)] + list(steps.items()):
            if v is not None and len(v) != t:
                raise LengthMismatch(f"{e.name}: {k} has {len(v)} steps, actions {t}")
        if states is not None:
            steps["states"] = states
            self._sim_joints(g, states, steps, max(len(profile.robots), 1))
        spec = self.file_spec(profile, steps.keys())
        state_raw_keys = [k for k in (base_spec.state_raw_keys or []) if k in steps]
        action_raw = concat_raw([actions], t)
        state_raw = concat_raw([steps[k] for k in state_raw_keys], t)
        images = {}
        for role, key in self.cameras.items():
            k = key.split("/", 1)[1]
            if obs is None or k not in obs:
                images[role] = None
                continue
            frames = obs[k][()]
            if len(frames) != t:
                raise LengthMismatch(f"{e.name}: camera {k} has {len(frames)} frames for {t} actions")
            images[role] = encode_frames(orient(frames, self.image_transform), self.image_format,
                                         f"{e.name} {k}")
        reward = g["rewards"][()] if "rewards" in g else None
        dones = g["dones"][()] if "dones" in g else None
        for name, arr in (("rewards", reward), ("dones", dones)):
            if arr is not None and len(arr) != t:
                raise LengthMismatch(f"{e.name}: {name} has {len(arr)} entries for {t} actions")
        text, source = self.instruction_for(f, profile, sf)
        extra = {"source_file": sf.rel, "demo": e.name, "env_name": profile.env_name,
                 "instruction_source": source, "layout": profile.layout,
                 "filters": sorted(m for m, names in masks.items() if e.name in names)}
        for k, v in g.attrs.items():
            if k in ("model_file", "init_state", "teleop_config", "session"):
                continue
            val = plain(v)
            if isinstance(val, str) and val.lstrip().startswith("{"):
                try:
                    val = json.loads(val)
                except ValueError:
                    pass
            extra[k] = val
        self._extras(g, t, extra)
        return self.assemble(
            sf=sf, entry=e, spec=spec, steps=steps, t=t, action_raw=action_raw, state_raw=state_raw,
            images=images, instruction=text, instructions=[text], extra=extra,
            reward=None if reward is None else reward.astype(np.float32),
            is_terminal=bool(dones[-1]) if dones is not None and len(dones) else False,
            embodiment_id=base_spec.embodiment if base_spec.embodiment != self.spec.embodiment else None)

    def _extras(self, g, t: int, extra: dict) -> None:
        """Keep small per-step datasets that align with the actions; list those that do not."""
        import h5py

        aligned, unaligned, wide = {}, {}, {}

        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset) or name.split("/")[0] in _CONSUMED:
                return
            shape = list(obj.shape)
            per_step = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            if shape and shape[0] == t and obj.dtype.kind in "fiub" and per_step <= 8:
                v = obj[()]
                aligned[name] = (v.astype(int) if v.dtype.kind == "b" else v).reshape(t, -1).tolist()
            elif shape and shape[0] == t:
                wide[name] = shape
            else:
                unaligned[name] = shape

        g.visititems(visit)
        if aligned:
            extra["per_step"] = aligned
        if unaligned:
            extra["unaligned"] = unaligned  # own time axis: not steps of this episode
        if wide:
            extra["aligned_not_carried"] = wide  # aligned but too wide for the episode extra

    _index_cache: dict = {}

    def _sim_joints(self, g, states: np.ndarray, steps: dict, n_arms: int) -> None:
        """Arm joint and finger positions from the flattened MuJoCo state ``[time, qpos, qvel]``."""
        if any(f"obs/robot{i}_joint_pos" in steps for i in range(n_arms)):
            return
        xml = attr_str(g, "model_file")
        if not xml:
            return
        digest = hashlib.sha1(xml.encode("utf-8", "replace")).hexdigest()
        if digest not in self._index_cache:
            self._index_cache[digest] = mjcf_qpos_index(xml)
        idx = self._index_cache[digest]
        if idx is None:
            return
        index, nq = idx
        if states.ndim != 2 or states.shape[1] < 1 + nq:
            return
        for i in range(n_arms):
            joints = [index.get(f"robot{i}_joint{j}") for j in range(1, 8)]
            if all(a is not None for a in joints):
                steps[f"sim/robot{i}_joint_pos"] = states[:, [1 + a for a in joints]]
            for pat in (f"gripper{i}_finger_joint", f"gripper{i}_right_finger_joint"):
                fingers = [index.get(f"{pat}{j}") for j in (1, 2)]
                if all(a is not None for a in fingers):
                    steps[f"sim/robot{i}_gripper_qpos"] = states[:, [1 + a for a in fingers]]
                    break


def _unaligned_names(g, t: int) -> list[str]:
    import h5py

    names = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and name.split("/")[0] not in _CONSUMED and (
                not obj.shape or obj.shape[0] != t):
            names.append(name)

    g.visititems(visit)
    return names


__all__ = ["RobomimicConverter", "RobosuiteProfile", "task_text"]
