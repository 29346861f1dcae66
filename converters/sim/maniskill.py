"""``maniskill``: ManiSkill 2/3 trajectories, ``trajectory.<obs>.<control_mode>.<backend>.h5`` + same-name ``.json``.

The JSON holds ``env_info{env_id, env_kwargs, max_episode_steps}`` and ``episodes[{episode_id,
episode_seed, control_mode, elapsed_steps, success, ...}]``; the HDF5 holds ``traj_<id>/{actions [T,A],
terminated, truncated, success, env_states, obs}`` where every obs array has **T+1** entries (the
observation after the last action too). Rows follow the observations: T+1 rows, the last one with
``action_valid = false`` and a zero action (``action_raw`` rows 0..T-1 are the stored actions).
Gripper: +1 = open, -1 = closed (the opposite of robosuite/LIBERO).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from vlaflow.media.images import encode_frames
from vlaflow.schemas import EpisodeError, FeatureMismatch, InputError
from vlaflow.schemas.names import natural_key, safe_component

from ..base import ReadItem, WorkUnit, option
from ..standardize import DatasetSpec
from .common import EpisodeEntry, SimConverter, concat_raw, raw_key_names, spec_named, specialize, words_from_name
from .errors import LengthMismatch, MissingMetadata, UnreadableFile
from .hdf5 import SourceFile, flat_datasets, open_h5, storage_bytes

SUPPORTED = ("pd_joint_pos", "pd_joint_delta_pos", "pd_ee_delta_pos", "pd_ee_delta_pose")
_TASK_TEXT = {
    "pickcube": "pick up the cube and move it to the goal position",
    "stackcube": "stack the red cube on top of the green cube",
    "pushcube": "push the cube to the goal region", "pullcube": "pull the cube to the goal region",
    "peginsertionside": "insert the peg into the hole from the side",
    "plugcharger": "plug the charger into the wall receptacle", "liftpegupright": "lift the peg upright",
    "pokecube": "use the peg to poke the cube to the goal", "rollball": "roll the ball to the goal region",
    "turnfaucet": "turn the faucet", "opencabinetdrawer": "open the cabinet drawer",
    "pushchair": "push the chair to the goal", "pickclutterycb": "pick up the target object from the clutter",
    "picksingleycb": "pick up the object and move it to the goal position",
}
STATE_RAW = ("obs/agent/qpos", "obs/agent/qvel", "obs/extra/tcp_pose")


def task_text(env_id: str) -> str:
    key = env_id.split("-v")[0].replace("_", "").replace("-", "").lower()
    return _TASK_TEXT.get(key, words_from_name(env_id) or "complete the task")


def sidecar(path: str) -> Path:
    return Path(path).with_suffix(".json")


def load_sidecar(path: str) -> dict:
    js = sidecar(path)
    if not js.is_file():
        raise MissingMetadata(f"{Path(path).name}: no {js.name} beside it (ManiSkill pairs every .h5 with a .json)")
    try:
        d = json.loads(js.read_text())
    except (OSError, ValueError) as err:
        raise UnreadableFile(f"{js.name}: not JSON ({err})") from None
    if not isinstance(d, dict):
        raise UnreadableFile(f"{js.name}: expected a JSON object")
    return d


def control_mode_of(path: str, meta: dict) -> str:
    kw = (meta.get("env_info") or {}).get("env_kwargs") or {}
    if kw.get("control_mode"):
        return str(kw["control_mode"])
    eps = meta.get("episodes") or []
    if eps and isinstance(eps[0], dict) and eps[0].get("control_mode"):
        return str(eps[0]["control_mode"])
    parts = Path(path).name.split(".")
    if len(parts) >= 4:  # trajectory.<obs>.<control_mode>[.<backend>].h5
        return parts[2]
    return "pd_joint_pos"  # a bare trajectory.h5: ManiSkill's default


def is_maniskill3(path: str, meta: dict) -> bool:
    kw = (meta.get("env_info") or {}).get("env_kwargs") or {}
    return len(Path(path).name.split(".")) >= 5 or "source_type" in meta or "sim_backend" in kw


class ManiSkillConverter(SimConverter):
    name = "maniskill"
    version = "1.0"
    description = "ManiSkill 2/3 trajectory .h5 + .json pairs (obs has T+1 steps)"
    layouts = ("maniskill",)

    @dataclass(frozen=True)
    class Options(SimConverter.Options):
        maniskill_rot_scale: float | None = option(None, "rotation scale of ManiSkill3 pd_ee_delta_pose actions "
                                                         "(default -0.1, as released)")

    def setup(self, mine: list[SourceFile]) -> None:
        self._meta: dict[str, dict] = {}
        modes, metas = {}, {}
        for sf in mine:
            try:
                meta = load_sidecar(sf.path)
            except EpisodeError:
                continue  # its unit reports missing_metadata
            metas[sf.path] = meta
            modes.setdefault(control_mode_of(sf.path, meta), []).append(sf.rel)
        if len(modes) > 1:
            raise InputError(f"{self.input_path}: trajectories in several control modes "
                             f"{ {m: v[:2] for m, v in modes.items()} }; ingest one control mode per dataset")
        self.mode = next(iter(modes), "pd_joint_pos")
        first = next((sf for sf in mine if sf.path in metas), mine[0])
        meta = metas.get(first.path, {})
        env_info = meta.get("env_info") or {}
        self.env_id = str(env_info.get("env_id") or "unknown")
        self.ms3 = is_maniskill3(first.path, meta)
        spec_name = ("maniskill_pd_ee_delta_pose" if self.ms3 else "maniskill2_pd_ee_delta_pose") \
            if self.mode == "pd_ee_delta_pose" else f"maniskill_{self.mode}"
        if self.options.spec is not None:
            self.spec = self.spec_for_user(spec_named("maniskill_pd_joint_pos"))
        elif self.mode in SUPPORTED:
            self.spec = spec_named(spec_name)
        else:
            self.spec = DatasetSpec(dataset="maniskill", embodiment="generic", fps=20, license="Apache-2.0",
                                    conventions={"control_mode": self.mode},
                                    notes=[f"control mode {self.mode} has no vlaflow spec (supported: "
                                           f"{', '.join(SUPPORTED)}): action slots empty; use action_raw"],
                                    source="<generic>")
            self._warnings.append(f"control mode {self.mode}: no spec, ingesting raw actions with the generic "
                                  f"embodiment (supported: {', '.join(SUPPORTED)})")
        self.params = {}
        if self.opts.maniskill_rot_scale is not None:
            self.params["fn:maniskill3_ee_delta_rot"] = {"scale": self.opts.maniskill_rot_scale}
        self.embodiment_id = self.spec.embodiment
        self.dataset = safe_component(f"maniskill_{self.env_id}")
        self.control_mode = self.mode
        kw = env_info.get("env_kwargs") or {}
        sim_cfg = kw.get("sim_config") or {}
        freq = sim_cfg.get("control_freq") if isinstance(sim_cfg, dict) else None
        self.fps = Fraction(str(freq)).limit_denominator(1001) if freq else self.spec.fps
        if not freq:
            self.notes.append(f"fps: the files do not record control_freq; ManiSkill's default {self.spec.fps} Hz assumed "
                              "(override with --opt fps=N)")
        self.cameras, action_dim, self.obs_widths = {}, 0, {}
        try:
            with open_h5(first.path) as f:
                trajs = sorted((k for k in f if k.startswith("traj_")), key=natural_key)
                if trajs:
                    g = f[trajs[0]]
                    action_dim = int(g["actions"].shape[1]) if "actions" in g else 0
                    self.cameras = self._cameras(g)
                    if "obs" in g:
                        self.obs_widths = {f"obs/{k}": int(np.prod(ds.shape[1:])) for k, ds in flat_datasets(g["obs"]).items()
                                           if ds.ndim <= 2}
        except EpisodeError:
            pass
        self.image_transform = "none"
        self.action_raw_keys = raw_key_names([("actions", action_dim)])
        self.state_raw_keys = raw_key_names([(k, self.obs_widths[k]) for k in STATE_RAW if k in self.obs_widths])
        self.notes.append(f"ManiSkill{'3' if self.ms3 else '2'} {self.env_id}, control mode {self.mode}; rows = T+1 "
                          "observations, the last row's action is invalid (zero); instruction synthesized from "
                          "the env id (episode extra 'instruction_source')")

    @staticmethod
    def _cameras(g) -> dict[str, str]:
        cams = {}
        obs = g["obs"] if "obs" in g else None
        if obs is None:
            return cams
        base = "sensor_data" if "sensor_data" in obs else ("image" if "image" in obs else None)
        if base is None:
            return cams
        names = sorted((c for c in obs[base] if "rgb" in obs[base][c]), key=natural_key)
        free = ["secondary", "tertiary"]
        for c in names:
            key = f"obs/{base}/{c}/rgb"
            low = c.lower()
            if ("hand" in low or "wrist" in low) and "wrist" not in cams:
                cams["wrist"] = key
            elif "primary" not in cams:
                cams["primary"] = key
            elif free:
                cams[free.pop(0)] = key
        return cams

    # -- work units ---------------------------------------------------------------------------------
    def list_episodes(self, sf: SourceFile) -> list[EpisodeEntry]:
        load_sidecar(sf.path)
        with open_h5(sf.path) as f:
            out = []
            for k in sorted((k for k in f if k.startswith("traj_")), key=natural_key):
                g = f[k]
                steps = int(g["actions"].shape[0]) if "actions" in g else 0
                idx = int(k[5:]) if k[5:].isdigit() else len(out)
                rows = steps + 1 if "obs" in g else steps  # rows follow the T+1 observations
                out.append(EpisodeEntry(self.default_split, k, idx, storage_bytes(g), rows))
            return out

    # -- read ---------------------------------------------------------------------------------------
    def read_unit(self, sf: SourceFile, unit: WorkUnit, entries: list[EpisodeEntry]) -> Iterator[ReadItem]:
        try:
            if sf.path not in self._meta:
                self._meta = {sf.path: load_sidecar(sf.path)}  # one file's JSON at a time
            meta = self._meta[sf.path]
            f = open_h5(sf.path)
        except EpisodeError as err:
            yield from self.reject_all(sf, entries, err)
            return
        by_id = {}
        for ep in meta.get("episodes") or []:
            if isinstance(ep, dict) and "episode_id" in ep:
                by_id[int(ep["episode_id"])] = ep
        env_id = str((meta.get("env_info") or {}).get("env_id") or self.env_id)
        with f:
            for e in entries:
                yield self.guarded(sf, e, self._traj, f, by_id, env_id, sf, e)

    def _traj(self, f, by_id: dict, env_id: str, sf: SourceFile, e: EpisodeEntry):
        g = f[e.name]
        if "actions" not in g:
            raise FeatureMismatch(f"{e.name}: no actions")
        ep_meta = by_id.get(e.index)
        if ep_meta is None:
            raise MissingMetadata(f"{e.name}: no episode_id {e.index} in {sidecar(sf.path).name}")
        actions = g["actions"][()]
        if actions.ndim != 2:
            raise FeatureMismatch(f"{e.name}: actions has shape {actions.shape}")
        n = int(actions.shape[0])
        if "elapsed_steps" in ep_meta and int(ep_meta["elapsed_steps"]) != n:
            raise LengthMismatch(f"{e.name}: {n} actions, the JSON says elapsed_steps {ep_meta['elapsed_steps']}")
        obs = flat_datasets(g["obs"], "obs/") if "obs" in g else {}
        low = {k: ds for k, ds in obs.items() if ds.ndim <= 2 and ds.dtype.kind in "fiub"}
        t = n + 1 if obs else n
        steps = {}
        for k, ds in low.items():
            v = ds[()]
            if len(v) != t:
                raise LengthMismatch(f"{e.name}: {k} has {len(v)} entries; expected T+1 = {t} for {n} actions")
            steps[k] = v
        if obs:
            act = np.concatenate([actions.astype(np.float64), np.zeros((1, actions.shape[1]))], axis=0)
        else:
            act = actions
        steps["actions"] = act
        spec = specialize(self.spec, steps.keys(), self.params)
        action_raw = concat_raw([np.concatenate([actions, np.zeros((t - n, actions.shape[1]), actions.dtype)])], t)
        state_raw = concat_raw([steps[k] for k in STATE_RAW if k in steps], t)
        images = {}
        for role, key in self.cameras.items():
            if key not in obs:
                images[role] = None
                continue
            frames = obs[key][()]
            if len(frames) != t:
                raise LengthMismatch(f"{e.name}: {key} has {len(frames)} frames; expected T+1 = {t}")
            images[role] = encode_frames(frames[..., :3], self.image_format, f"{e.name} {key}")
        reward = None
        if "rewards" in g:
            r = g["rewards"][()].astype(np.float32).reshape(-1)
            if len(r) != n:
                raise LengthMismatch(f"{e.name}: rewards has {len(r)} entries for {n} actions")
            reward = np.concatenate([r, np.zeros(t - n, np.float32)])
        terminated = bool(np.asarray(g["terminated"][()]).reshape(-1)[-1]) if "terminated" in g and len(g["terminated"]) else False
        success = bool(np.asarray(g["success"][()]).reshape(-1)[-1]) if "success" in g and len(g["success"]) \
            else bool(ep_meta.get("success", False))
        text = task_text(env_id)
        extra = {"source_file": sf.rel, "traj": e.name, "env_id": env_id, "instruction_source": "synthesized_from_env_id",
                 "success": success, "terminated": terminated,
                 **{k: v for k, v in ep_meta.items() if k not in ("episode_id",)}}
        return self.assemble(sf=sf, entry=e, spec=spec, steps=steps, t=t, action_raw=action_raw, state_raw=state_raw,
                             images=images, instruction=text, instructions=[text], extra=extra, reward=reward,
                             is_terminal=terminated, last_invalid=t > n)
