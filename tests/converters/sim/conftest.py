"""Real sim fixtures (read in place from ../shared) and generators for the layouts no small public
file exists for: LIBERO release files, RoboTwin 2.0 / XPolicyLab / 1.0-pickle episodes, ManiSkill
.h5 + .json pairs. Generators follow the layouts as the projects write them (key names, dtypes,
attrs, the OpenCV JPEG colour order, ManiSkill's T+1 observations)."""
from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("VLAFLOW_SHARED", REPO.parent / "shared"))
SIM = SHARED / "fixtures/sim"
LIFT_RAW = SIM / "robosuite_raw_lift_v1_4/demo.hdf5"
WIPE_RAW = SIM / "robosuite_raw_wipe_v1_0/demo.hdf5"
HANDOVER = SIM / "robosuite_roboturk_twoarm_handover/demo.hdf5"
ROBOMIMIC_REPLAY = SIM / "generated_robomimic_lift_replay/lift_replay_robomimic_64px.hdf5"
LIBERO_REPLAY = SIM / "generated_libero_layout_lift_replay/lift_replay_libero_layout_64px.hdf5"

OSC_CFG = {"type": "OSC_POSE", "input_max": 1, "input_min": -1, "output_max": [0.05, 0.05, 0.05, 0.5, 0.5, 0.5],
           "output_min": [-0.05, -0.05, -0.05, -0.5, -0.5, -0.5], "kp": 150, "damping_ratio": 1,
           "impedance_mode": "fixed", "control_delta": True, "uncouple_pos_ori": True}


@pytest.fixture(scope="session")
def sim_fixtures() -> Path:
    if not LIFT_RAW.exists():
        pytest.skip(f"real sim fixtures not found at {SIM} (needs ../shared beside the repo)")
    return SIM


# -- images -----------------------------------------------------------------------------------------
def pattern(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An upright test picture: red top band, green bottom-left, blue bottom-right, plus noise-free
    texture, so vertical and horizontal flips are both detectable."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 3] = (220, 30, 30)
    img[h // 3:, : w // 2] = (30, 200, 40)
    img[h // 3:, w // 2:] = (40, 50, 210)
    img[h // 2, :] = (seed * 37 % 255, 255, 255)
    return img


def cv2_imencode_jpg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """``cv2.imencode('.jpg', arr)`` semantics without OpenCV: the array is taken as BGR, so an RGB
    array is written with its channels swapped (PIL encoding of ``arr[..., ::-1]``, quality 95,
    4:2:0 chroma like OpenCV's default)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[..., ::-1])).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# -- LIBERO -------------------------------------------------------------------------------------------
def write_libero(path: Path, *, demos=(6, 5), size=16, instruction="turn on the stove and put the moka pot on it",
                 with_problem_info=True, nan_in=None, short_obs_in=None, seed=0) -> dict:
    """A LIBERO ``create_dataset.py`` file: 7-D OSC actions (gripper -1 open / +1 close), OpenGL
    (upside-down) 128² frames (``size`` here), obs/{gripper_states, joint_states, ee_states, ee_pos,
    ee_ori}, robot_states, uint8 rewards/dones with the last = 1."""
    rng = np.random.default_rng(seed)
    truth = {"actions": {}, "upright": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        g = f.create_group("data")
        pi = {"problem_name": "libero_kitchen_tabletop_manipulation", "domain_name": "kitchen",
              "language_instruction": instruction if with_problem_info else ""}
        g.attrs["env_name"] = "Libero_Kitchen_Tabletop_Manipulation"
        g.attrs["problem_info"] = json.dumps(pi) if with_problem_info else json.dumps({"problem_name": "x"})
        g.attrs["macros_image_convention"] = "opengl"
        g.attrs["bddl_file_name"] = "libero/libero/bddl_files/libero_10/KITCHEN_SCENE3_turn_on_the_stove.bddl"
        g.attrs["bddl_file_content"] = "(define (problem LIBERO_Kitchen_Tabletop_Manipulation) ...)"
        g.attrs["env_args"] = json.dumps({"type": 1, "env_name": "Libero_Kitchen_Tabletop_Manipulation",
                                          "env_kwargs": {"robots": ["Panda"], "controller_configs": OSC_CFG,
                                                         "control_freq": 20, "camera_heights": size,
                                                         "camera_widths": size}})
        total = 0
        for i, t in enumerate(demos):
            d = g.create_group(f"demo_{i}")
            a = rng.uniform(-1, 1, size=(t, 7))
            a[:, 6] = np.where(np.arange(t) < t // 2, -1.0, 1.0)  # open, then close
            if nan_in == i:
                a[t // 2, 1] = np.nan
            d.create_dataset("actions", data=a)
            d.create_dataset("states", data=rng.normal(size=(t, 47)))
            q = rng.normal(size=(t, 4))
            q /= np.linalg.norm(q, axis=1, keepdims=True)
            grip = np.stack([np.linspace(0.04, 0.0, t), -np.linspace(0.04, 0.0, t)], axis=1)
            pos = rng.normal(size=(t, 3)) * 0.1
            ori = rng.normal(size=(t, 3)) * 0.5
            d.create_dataset("robot_states", data=np.hstack([grip, pos, q]))
            r = np.zeros(t, np.uint8)
            r[-1] = 1
            d.create_dataset("rewards", data=r)
            d.create_dataset("dones", data=r.copy())
            ob = d.create_group("obs")
            up = np.stack([pattern(size, size, seed=k) for k in range(t)])
            nobs = t - 1 if short_obs_in == i else t
            ob.create_dataset("agentview_rgb", data=up[:nobs, ::-1])  # OpenGL: stored upside down
            ob.create_dataset("eye_in_hand_rgb", data=up[:nobs, ::-1])
            ob.create_dataset("gripper_states", data=grip)
            ob.create_dataset("joint_states", data=rng.normal(size=(t, 7)))
            ob.create_dataset("ee_states", data=np.hstack([pos, ori]))
            ob.create_dataset("ee_pos", data=pos)
            ob.create_dataset("ee_ori", data=ori)
            d.attrs["num_samples"] = t
            d.attrs["model_file"] = "<mujoco model='libero'/>"
            d.attrs["init_state"] = rng.normal(size=47)
            truth["actions"][f"demo_{i}"] = a
            truth["upright"][f"demo_{i}"] = up
            total += t
        g.attrs["num_demos"] = len(demos)
        g.attrs["total"] = total
    return truth


# -- RoboTwin 2.0 -------------------------------------------------------------------------------------
CAMS = ("head_camera", "left_camera", "right_camera")


def write_robotwin2(cfg_dir: Path, n: int, *, t=5, h=12, w=16, seen=("put the block on the mat", "place the block onto the mat"),
                    unseen=("move the cube to the pad",), bad_jpeg_in=None, short_in=None, seed=0) -> dict:
    """``<task>/<cfg>/data/episode{N}.hdf5`` + ``instructions/episode{N}.json`` as RoboTwin 2.0's
    ``pkl2hdf5`` writes them: rgb = ``cv2.imencode('.jpg', rgb)`` bytes in an ``S{max_len}`` dataset
    (NUL-padded), joint_action/{left_arm (T,6), left_gripper (T,), right_arm, right_gripper, vector (T,14)},
    endpose/{left_endpose (T,7) = xyz + quat wxyz, left_gripper, ...}."""
    rng = np.random.default_rng(seed)
    (cfg_dir / "data").mkdir(parents=True, exist_ok=True)
    (cfg_dir / "instructions").mkdir(parents=True, exist_ok=True)
    truth = {}
    for e in range(n):
        la, ra = rng.normal(size=(t, 6)), rng.normal(size=(t, 6))
        lg, rg = np.linspace(1, 0, t), np.linspace(0, 1, t)
        vector = np.hstack([la, lg[:, None], ra, rg[:, None]])
        frames = {c: np.stack([np.full((h, w, 3), (200, 30 + 10 * k, 20), np.uint8) for k in range(t)]) for c in CAMS}
        for c in CAMS:
            frames[c][:, : h // 2, : w // 2] = (10, 40, 230)  # a blue block top-left
        with h5py.File(cfg_dir / "data" / f"episode{e}.hdf5", "w") as f:
            obs = f.create_group("observation")
            for c in CAMS:
                g = obs.create_group(c)
                enc = [cv2_imencode_jpg(fr) for fr in frames[c]]
                if bad_jpeg_in == e and c == "left_camera":
                    enc[2] = enc[2][:40]  # cut inside the entropy-coded data
                width = max(len(b) for b in enc)
                g.create_dataset("rgb", data=np.array(enc, dtype=f"S{width}"))
                g.create_dataset("intrinsic_cv", data=np.tile(np.eye(3), (t, 1, 1)))
                g.create_dataset("extrinsic_cv", data=np.tile(np.eye(3, 4), (t, 1, 1)))
                g.create_dataset("cam2world_gl", data=np.tile(np.eye(4), (t, 1, 1)))
            ja = f.create_group("joint_action")
            tt = t - 1 if short_in == e else t
            ja.create_dataset("left_arm", data=la[:tt])
            ja.create_dataset("left_gripper", data=lg)
            ja.create_dataset("right_arm", data=ra)
            ja.create_dataset("right_gripper", data=rg)
            ja.create_dataset("vector", data=vector)
            ep = f.create_group("endpose")
            quat = np.tile([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)], (t, 1))  # wxyz: 90° about z
            ep.create_dataset("left_endpose", data=np.hstack([rng.normal(size=(t, 3)), quat]))
            ep.create_dataset("left_gripper", data=lg)
            ep.create_dataset("right_endpose", data=np.hstack([rng.normal(size=(t, 3)), quat]))
            ep.create_dataset("right_gripper", data=rg)
        (cfg_dir / "instructions" / f"episode{e}.json").write_text(json.dumps({"seen": list(seen), "unseen": list(unseen)}))
        truth[e] = {"vector": vector, "frames": frames}
    return truth


def write_robotwin_xpl(path: Path, *, t=6, seed=0):
    """XPolicyLab v1.0 (from its published layout): data_format_version, instructions JSON list,
    additional_info/frequency, state/* and action/* (one frame ahead), vision/<cam>/colors."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    la, ra = rng.normal(size=(t, 6)), rng.normal(size=(t, 6))
    lg, rg = np.linspace(1, 0, t)[:, None], np.linspace(0, 1, t)[:, None]
    with h5py.File(path, "w") as f:
        f.attrs["data_format_version"] = "v1.0"
        f.create_dataset("instructions", data=json.dumps(["stack the bowls", "put one bowl in the other"]))
        f.create_group("additional_info").create_dataset("frequency", data=25)
        s, a = f.create_group("state"), f.create_group("action")
        quat = np.tile([1.0, 0, 0, 0], (t, 1))
        for k, v in (("left_arm_joint_states", la), ("left_ee_joint_states", lg), ("right_arm_joint_states", ra),
                     ("right_ee_joint_states", rg)):
            s.create_dataset(k, data=v)
            a.create_dataset(k, data=np.concatenate([v[1:], v[-1:]]))
        s.create_dataset("left_ee_poses", data=np.hstack([rng.normal(size=(t, 3)), quat]))
        s.create_dataset("right_ee_poses", data=np.hstack([rng.normal(size=(t, 3)), quat]))
        v = f.create_group("vision")
        for c in ("head_camera", "left_wrist_camera", "right_wrist_camera"):
            v.create_group(c).create_dataset("colors", data=np.stack([pattern(8, 8, k) for k in range(t)]))
    return {"left_arm": la}


def write_robotwin_pickles(ep_dir: Path, *, t=4, seed=0) -> np.ndarray:
    """RoboTwin 1.0: one pickle per frame, ``{observation: {cam: {rgb, ...}}, joint_action (14,), endpose (14,)}``."""
    rng = np.random.default_rng(seed)
    ep_dir.mkdir(parents=True, exist_ok=True)
    vec = rng.normal(size=(t, 14))
    for i in range(t):
        frame = {"observation": {"head_camera": {"rgb": pattern(8, 8, i), "intrinsic_cv": np.eye(3)}},
                 "pointcloud": np.zeros((16, 6)), "joint_action": vec[i], "endpose": rng.normal(size=14)}
        with open(ep_dir / f"{i}.pkl", "wb") as fh:
            pickle.dump(frame, fh)
    return vec


# -- ManiSkill ----------------------------------------------------------------------------------------
def write_maniskill(folder: Path, *, mode="pd_joint_pos", n=3, t=4, size=8, env_id="PickCube-v1", obs=True,
                    short_obs_in=None, bad_elapsed_in=None, actions=None, seed=0, backend="physx_cpu") -> dict:
    """``trajectory.<obs>.<mode>.<backend>.h5`` + ``.json``: traj_<id>/{actions [T,A] f32, terminated,
    truncated, success, rewards, env_states [T+1], obs/{agent/{qpos,qvel}, extra/tcp_pose,
    sensor_data/base_camera/{rgb, depth, segmentation}, sensor_param/...} with T+1 entries}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    dim = {"pd_joint_pos": 8, "pd_joint_delta_pos": 8, "pd_ee_delta_pos": 4, "pd_ee_delta_pose": 7}.get(mode, 8)
    name = f"trajectory.{'rgb' if obs else 'none'}.{mode}.{backend}" if backend else f"trajectory.{'rgb' if obs else 'none'}.{mode}"
    truth = {"actions": {}, "frames": {}}
    episodes = []
    with h5py.File(folder / f"{name}.h5", "w") as f:
        for k in range(n):
            g = f.create_group(f"traj_{k}")
            a = (actions if actions is not None else rng.uniform(-1, 1, size=(t, dim))).astype(np.float32)
            tt = len(a)
            g.create_dataset("actions", data=a)
            term = np.zeros(tt, bool)
            term[-1] = True
            g.create_dataset("terminated", data=term)
            g.create_dataset("truncated", data=np.zeros(tt, bool))
            g.create_dataset("success", data=term.copy())
            g.create_dataset("rewards", data=np.linspace(0, 1, tt).astype(np.float32))
            es = g.create_group("env_states")
            es.create_group("actors").create_dataset("cube", data=rng.normal(size=(tt + 1, 13)).astype(np.float32))
            es.create_group("articulations").create_dataset("panda", data=rng.normal(size=(tt + 1, 31)).astype(np.float32))
            if obs:
                nobs = tt if short_obs_in == k else tt + 1
                o = g.create_group("obs")
                qpos = rng.normal(size=(nobs, 9)).astype(np.float32)
                qpos[:, 7:9] = 0.02
                o.create_group("agent").create_dataset("qpos", data=qpos)
                o["agent"].create_dataset("qvel", data=rng.normal(size=(nobs, 9)).astype(np.float32))
                tcp = np.hstack([rng.normal(size=(nobs, 3)), np.tile([1.0, 0, 0, 0], (nobs, 1))]).astype(np.float32)
                o.create_group("extra").create_dataset("tcp_pose", data=tcp)
                frames = np.stack([pattern(size, size, i) for i in range(nobs)])
                cam = o.create_group("sensor_data").create_group("base_camera")
                cam.create_dataset("rgb", data=frames)
                cam.create_dataset("depth", data=np.zeros((nobs, size, size, 1), np.int16))
                cam.create_dataset("segmentation", data=np.zeros((nobs, size, size, 1), np.int16))
                sp = o.create_group("sensor_param").create_group("base_camera")
                sp.create_dataset("intrinsic_cv", data=np.tile(np.eye(3), (nobs, 1, 1)).astype(np.float32))
                truth["frames"][k] = frames
            truth["actions"][k] = a
            episodes.append({"episode_id": k, "episode_seed": 100 + k, "reset_kwargs": {"seed": 100 + k},
                             "control_mode": mode, "elapsed_steps": tt + (1 if bad_elapsed_in == k else 0),
                             "success": True})
    meta = {"env_info": {"env_id": env_id, "env_kwargs": {"obs_mode": "rgb" if obs else "none", "control_mode": mode,
                                                          "render_mode": "rgb_array", "sim_backend": backend or "cpu"},
                         "max_episode_steps": 50},
            "commit_info": {"commit_id": "0" * 40}, "source_type": "motionplanning",
            "source_desc": "generated for vlaflow tests", "episodes": episodes}
    (folder / f"{name}.json").write_text(json.dumps(meta))
    truth["path"] = folder / f"{name}.h5"
    return truth


@pytest.fixture(scope="session")
def gen():
    """The generators and image helpers, for tests (conftest modules are not importable by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(write_libero=write_libero, write_robotwin2=write_robotwin2,
                           write_robotwin_xpl=write_robotwin_xpl, write_robotwin_pickles=write_robotwin_pickles,
                           write_maniskill=write_maniskill, pattern=pattern, cv2_imencode_jpg=cv2_imencode_jpg,
                           decode=decode, LIFT_RAW=LIFT_RAW, WIPE_RAW=WIPE_RAW, HANDOVER=HANDOVER,
                           ROBOMIMIC_REPLAY=ROBOMIMIC_REPLAY, LIBERO_REPLAY=LIBERO_REPLAY)


def read_all(conv, target=256 << 20):
    return [item for unit in conv.work_units(target) for item in conv.read(unit)]


@pytest.fixture(scope="session")
def read():
    return read_all
